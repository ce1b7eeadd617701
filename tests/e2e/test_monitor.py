"""The operator's cache monitor at /monitor: the page itself (no token, no external URL,
strict CSP) and, in a real headless Chromium driven by Selenium, the live figures, the
chart and the token/Redis/API states. Screenshots go to the test's tmp_path and to
test-output/ (git-ignored) in the repository root.

Needs Debian's `chromium` and `chromium-driver` packages (apt-get install chromium
chromium-driver) and `selenium` in the venv; without them the browser tests skip.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from support.ports import free_port
from tests.helpers_servers import ApiServer, database_proxy_env, running_servers

PROJECT_DIR = Path(__file__).resolve().parents[2]
OUTPUT_DIR = PROJECT_DIR / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


# --- the page itself (Chalice test client) ----------------------------------------------

def test_page_needs_no_token_and_references_no_external_url(client, app_env):
    response = client.http.get("/monitor")  # no Authorization header
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.body.decode("utf-8")
    assert "<title>Cache monitor" in html
    for testid in ("state-banner", "token-input", "overall-hit-rate", "chart", "db-loads-per-min",
                   "views-table", "breaker-state", "redis-memory", "l1-entries", "l1-bytes", "stale-served",
                   "fleet-containers", "container-id", "c-overall-hit-rate", "c-l1-hit-rate", "db-state"):
        assert f'id="{testid}"' in html, testid
    # Nothing is loaded from anywhere: no URL except the SVG namespace name, no src/href attributes.
    urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s'\"<>)]*", html, flags=re.I))
    assert urls <= {SVG_NAMESPACE, "//www.w3.org/2000/svg"}, urls
    assert not re.search(r"\b(?:src|href)\s*=", html, flags=re.I)
    assert "@import" not in html and "url(" not in html
    # No token or secret in the page; the token is asked for and kept in sessionStorage.
    assert app_env.token(role="operator")[:20] not in html
    assert "sessionStorage" in html and "Authorization" in html
    assert "?token=" not in html and "&token=" not in html


def test_page_content_security_policy_is_strict(client):
    response = client.http.get("/monitor")
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert directives["base-uri"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp and "*" not in csp
    html = response.body.decode("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    assert len(scripts) == 1 and len(styles) == 1

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert directives["script-src"] == sha(scripts[0])
    assert directives["style-src"] == sha(styles[0])
    assert 'style="' not in html  # inline style attributes would be blocked by this CSP
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_stats_refuse_tenant_roles_and_anonymous_but_serve_operator(client, app_env):
    assert client.http.get("/api/cache/stats", headers=app_env.headers(role="staff")).status_code == 403
    assert client.http.get("/api/cache/stats", headers=app_env.headers(role="admin")).status_code == 403
    assert client.http.get("/api/cache/stats").status_code == 401
    ok = client.http.get("/api/cache/stats", headers=app_env.headers(role="operator"))
    assert ok.status_code == 200, ok.body
    doc = ok.json_body
    assert {"fleet", "fleetSource", "fleetError", "container", "database", "views", "now"} <= set(doc)
    assert doc["fleetSource"] == "redis" and doc["fleetError"] is None and doc["fleet"]["containers"] >= 1
    for part in (doc["fleet"], doc["container"]):
        for tier in ("l1", "l2", "db"):
            assert {"hits", "misses", "hitRate", "p50Us", "p99Us", "errors"} <= set(part[tier])
        assert {"entries", "bytes", "evictions"} <= set(part["l1"])
        assert {"staleServed", "errors", "overall"} <= set(part)
    assert {"state", "breaker", "memoryUsedBytes"} <= set(doc["container"]["l2"])
    assert {"id", "tracking", "publish", "uptimeS"} <= set(doc["container"])
    assert doc["database"] == {"state": "ok"}


# --- in a browser ----------------------------------------------------------------------

def _browser_missing() -> Optional[str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium==4.51.0"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install chromium chromium-driver"
    return None


def _new_driver(width: int = 1280, height: int = 1000):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser_available() -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def servers(app_env, browser_available) -> Iterator[list[ApiServer]]:
    """Two containers of one fleet (a namespace of their own, publishing every 0.5 s): the
    page is served by the first, the second only serves traffic."""
    import redis

    env = {**app_env.env, "CACHE_NAMESPACE": f"{app_env.namespace}m", "STATS_PUBLISH_INTERVAL": "0.5"}
    try:
        with running_servers(env, 2) as started:
            yield started
    finally:
        client = redis.Redis.from_url(env["REDIS_URL"])
        keys = list(client.scan_iter(match=f"{env['CACHE_NAMESPACE']}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def server(servers) -> ApiServer:
    return servers[0]


@pytest.fixture()
def driver(browser_available):  # type: ignore[no-untyped-def]
    d = _new_driver()
    try:
        yield d
    finally:
        d.quit()


def _wait(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # noqa: BLE001 - the page may be mid-render
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _traffic(port: int, rounds: int = 10) -> None:
    """Cached GETs of tenant 1 (with an admin token of that hospital: the monitor's operator
    token reads no hospital's data), repeated so the later ones are L1 hits."""
    from chalicelib.auth import issue_token
    from tests.conftest import TEST_AUTH_SECRET

    token = issue_token(TEST_AUTH_SECRET, 1, "admin")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(rounds):
            for path in ("/api/departments?clientId=1", "/api/doctors?clientId=1"):
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, (path, resp.status)
    finally:
        conn.close()


def _state(d) -> str:  # type: ignore[no-untyped-def]
    return d.find_element("id", "state-banner").get_attribute("data-state")


def _enter_token(d, token: str) -> None:  # type: ignore[no-untyped-def]
    field = d.find_element("id", "token-input")
    field.clear()
    field.send_keys(token)
    d.find_element("id", "token-save").click()


def _points(d) -> int:  # type: ignore[no-untyped-def]
    return int(d.find_element("id", "chart").get_attribute("data-points") or 0)


def _csp_violations(d) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]


def _save(d, tmp_path: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    shot = tmp_path / name
    assert d.save_screenshot(str(shot)), "screenshot failed"
    OUTPUT_DIR.mkdir(exist_ok=True)
    shutil.copyfile(shot, OUTPUT_DIR / name)
    assert shot.stat().st_size > 10_000
    return shot


def _stats_json(port: int, token: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/cache/stats", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def _value(d, testid: str) -> str:  # type: ignore[no-untyped-def]
    return d.find_element("id", testid).get_attribute("data-value") or ""


def _classes(d, testid: str) -> set[str]:  # type: ignore[no-untyped-def]
    return set((d.find_element("id", testid).get_attribute("class") or "").split())


def test_monitor_live_in_browser(servers, server, driver, app_env, tmp_path):
    d = driver
    base = f"http://127.0.0.1:{server.port}"
    admin = app_env.token(role="operator")
    d.get(f"{base}/monitor")
    assert _state(d) == "no-token"
    assert d.find_element("id", "token-form").is_displayed()

    _enter_token(d, admin)
    _wait(lambda: _state(d) == "ok", what="the ok state")
    assert admin not in d.current_url and "token" not in d.current_url
    assert d.execute_script("return window.sessionStorage.getItem('hbMonitorToken')") == admin
    assert not d.find_element("id", "token-form").is_displayed()

    _traffic(server.port)
    figure = d.find_element("id", "overall-hit-rate")
    first = _wait(lambda: re.fullmatch(r"\d{1,3}\.\d %", figure.text) and figure.text, what="a hit-rate number")
    rate = float(figure.get_attribute("data-value"))
    assert 0 < rate < 1 and first == f"{rate * 100:.1f} %"
    points_before = _points(d)
    assert points_before >= 1

    _traffic(server.port, rounds=30)  # more L1 hits: the overall rate climbs
    _wait(lambda: figure.text != first, what="the hit-rate figure to change")
    assert float(figure.get_attribute("data-value")) > rate
    _wait(lambda: _points(d) >= points_before + 2, what="the chart to gain points")
    assert d.find_elements("css selector", "#chart path[data-series='overall']")
    assert len(d.find_elements("css selector", "#chart circle[data-point]")) >= 2

    # The other figures: per-tier hit rates and latencies, L1 size, Redis, DB loads, views.
    assert re.fullmatch(r"\d{1,3}\.\d %", d.find_element("id", "l1-hit-rate").text)
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", d.find_element("id", "l1-p50").text)
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", d.find_element("id", "db-p99").text)
    assert int(d.find_element("id", "l1-entries").get_attribute("data-value")) >= 2
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)", d.find_element("id", "l1-bytes").text)
    assert d.find_element("id", "l2-state").text == "ok"
    assert d.find_element("id", "breaker-state").text == "closed"
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB|GiB)", d.find_element("id", "redis-memory").text)
    assert d.find_element("id", "stale-served").text == "0"
    loads = _wait(lambda: d.find_element("id", "db-loads-per-min").get_attribute("data-value"),
                  what="DB loads per minute")
    assert float(loads) >= 0
    # a scheduled-style view refresh (it pre-warms Redis): the next poll lists it
    subprocess.run([sys.executable, "-m", "chalicelib.cli", "refresh-views"], cwd=PROJECT_DIR, check=True,
                   env={**os.environ, **app_env.env}, stdout=subprocess.DEVNULL, timeout=120)
    _wait(lambda: d.find_elements("css selector", "#views-body tr[data-view]"), what="the view refreshes")
    views = app_env.sql("SELECT view_name FROM view_refresh ORDER BY view_name")
    rows = d.find_elements("css selector", "#views-body tr[data-view]")
    assert views and [r.get_attribute("data-view") for r in rows] == [v[0] for v in views]
    cells = rows[0].find_elements("tag name", "td")
    assert re.fullmatch(r"\d+ s ago", cells[1].text) and re.fullmatch(r"[\d.]+ ms", cells[2].text)
    assert re.fullmatch(r"[\d,]+", cells[3].text) and cells[4].text

    # The fleet: the second container's traffic is in the fleet's figures, not in this one's.
    other = servers[1]
    _traffic(other.port, rounds=25)

    def fleet_shown() -> bool:
        mine, theirs = _stats_json(server.port, admin)["container"], _stats_json(other.port, admin)["container"]
        return (_value(d, "fleet-containers") == "2"
                and _value(d, "overall-requests") == str(mine["overall"]["requests"] + theirs["overall"]["requests"])
                and _value(d, "c-overall-requests") == str(mine["overall"]["requests"])
                and _value(d, "l1-entries") == str(mine["l1"]["entries"] + theirs["l1"]["entries"])
                and _value(d, "container-id") == mine["id"])

    _wait(fleet_shown, what="the fleet of two containers and this container beside it")
    assert "2 containers" in d.find_element("id", "fleet-containers").text
    assert {t.text for t in d.find_elements("css selector", "[data-scope-tag]")} == {"fleet"}
    mine, theirs = _stats_json(server.port, admin)["container"], _stats_json(other.port, admin)["container"]
    hits, lookups = (sum(c["l1"][k] for c in (mine, theirs)) for k in ("hits", "misses"))
    assert float(_value(d, "l1-hit-rate")) == round(hits / (hits + lookups), 4)  # summed, not averaged
    assert float(_value(d, "c-l1-hit-rate")) == mine["l1"]["hitRate"]
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", d.find_element("id", "c-db-p99").text)
    assert _state(d) == "ok" and "good" in _classes(d, "l2-state") and "good" in _classes(d, "breaker-state")
    assert d.find_element("id", "db-state").text == "ok"

    assert _csp_violations(d) == []
    _save(d, tmp_path, "monitor.png")

    # Phone width: one column of content, nothing wider than the screen.
    d.set_window_size(390, 844)
    points = _points(d)
    _wait(lambda: _points(d) > points, what="a refresh at phone width")
    time.sleep(0.3)  # the chart redraws 150 ms after a resize
    inner, scroll = d.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= inner, (scroll, inner)
    assert d.find_element("id", "overall-hit-rate").is_displayed()
    _save(d, tmp_path, "monitor-phone.png")

    # Reload: the token is still in this tab's sessionStorage, so the page resumes.
    d.refresh()
    _wait(lambda: _state(d) == "ok", what="the ok state after reload")


def test_monitor_staff_token_is_refused(server, driver, app_env, tmp_path):
    d = driver
    d.get(f"http://127.0.0.1:{server.port}/monitor")
    _enter_token(d, app_env.token(role="staff"))
    _wait(lambda: _state(d) == "refused", what="the refused state")
    banner = d.find_element("id", "state-banner").text
    assert "Token refused" in banner and "403" in banner
    assert d.find_element("id", "token-form").is_displayed()
    assert d.execute_script("return window.sessionStorage.getItem('hbMonitorToken')") is None
    assert d.find_element("id", "overall-hit-rate").text == "—"
    _enter_token(d, "not-a-token")
    _wait(lambda: "401" in d.find_element("id", "state-banner").text, what="401 refused")
    assert _state(d) == "refused"
    _save(d, tmp_path, "monitor-refused.png")


REDIS_CARDS = ("l2-state", "breaker-state", "fleet-containers")


def _open_monitor(d: Any, port: int, token: str) -> None:
    d.get(f"http://127.0.0.1:{port}/monitor")
    _enter_token(d, token)


def test_monitor_shows_redis_down_and_api_unreachable(app_env, driver, tmp_path):
    """A server whose Redis URL points at a closed port, then stopped altogether. In each
    state the banner and the cards say the same."""
    env = {**app_env.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    api = ApiServer(env).start()
    try:
        api.wait_healthy()
        admin = app_env.token(role="operator")
        d = driver
        _open_monitor(d, api.port, admin)
        _wait(lambda: _state(d) == "redis-down", what="the redis-down state")  # before any traffic, too
        banner = d.find_element("id", "state-banner").text
        assert "Redis down" in banner and "cannot reach Redis" in banner
        _traffic(api.port, rounds=2)
        _wait(lambda: _value(d, "overall-requests") not in ("", "0"), what="figures after traffic")
        assert _state(d) == "redis-down"
        assert d.find_element("id", "l2-state").text == "down" and "bad" in _classes(d, "l2-state")
        assert d.find_element("id", "tracking-state").text == "down"
        assert d.find_element("id", "breaker-state").text in ("closed", "open", "half_open")
        assert not any("good" in _classes(d, card) for card in REDIS_CARDS), [
            (card, _classes(d, card)) for card in REDIS_CARDS]
        assert d.find_element("id", "fleet-containers").text == "unavailable"
        assert "Redis" in d.find_element("id", "fleet-note").text
        assert {t.text for t in d.find_elements("css selector", "[data-scope-tag]")} == {"this container"}
        # with no fleet, the main figures are this container's own
        assert _value(d, "overall-requests") == _value(d, "c-overall-requests")
        assert d.find_element("id", "redis-memory").text == "—"
        assert d.find_element("id", "db-state").text == "ok"
        _save(d, tmp_path, "monitor-redis-down.png")
    finally:
        api.stop()
    _wait(lambda: _state(d) == "unreachable", what="the unreachable state")
    assert "API unreachable" in d.find_element("id", "state-banner").text
    for card in ("l2-state", "breaker-state", "db-state", "fleet-containers"):  # nothing is known now
        assert d.find_element("id", card).text == "unknown" and not _classes(d, card) & {"good", "bad", "warn"}
    assert "stale" in (d.find_element("tag name", "body").get_attribute("class") or "")


def test_monitor_shows_database_down(app_env, driver, tmp_path):
    """A server whose PostgreSQL connection goes through a proxy that is then cut."""
    proxy, env = database_proxy_env(app_env.env)
    api = ApiServer(env).start()
    try:
        api.wait_healthy()
        admin = app_env.token(role="operator")
        d = driver
        _open_monitor(d, api.port, admin)
        _wait(lambda: _state(d) == "ok", what="the ok state")
        assert d.find_element("id", "db-state").text == "ok"
        proxy.cut()
        _wait(lambda: _state(d) == "db-down", what="the db-down state")
        assert "Database down" in d.find_element("id", "state-banner").text
        assert d.find_element("id", "db-state").text == "down" and "bad" in _classes(d, "db-state")
        assert "Database down" in d.find_element("id", "views-body").text
        assert d.find_element("id", "l2-state").text == "ok"  # Redis is fine: its card says so
        assert _csp_violations(d) == []
        _save(d, tmp_path, "monitor-db-down.png")
    finally:
        api.stop()
        proxy.cut()
