"""The cached-resource declarations: what settings, routes, pre-warm and docs take from them."""
from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest

import app as application
from chalicelib.auth import Principal
from chalicelib.booking import resources
from chalicelib.cache.keys import KeySpace
from chalicelib.cache.policies import policies_from
from chalicelib.cache.tiered import TieredCache
from chalicelib.http import ApiError
from chalicelib.lifetimes import declared_freshness
from chalicelib.settings import CacheSettings, SettingsError, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "caching.md"
SECRET = "s" * 40


def _offline_cache(**env: str) -> TieredCache:
    settings = load_settings({"REDIS_DISABLED": "1", "AUTH_SECRET": SECRET, **env})
    return TieredCache(settings, declared_freshness())


def _caller(role: str = "staff", tenant: int = 1, patient_id: int | None = None) -> Principal:
    return Principal(sub="u1", tenant=tenant, role=role, patient_id=patient_id, expires_at=time.time() + 600)


def test_docs_table_is_the_declarations() -> None:
    text = DOCS.read_text()
    assert resources.freshness_table() in text, "regenerate the table in docs/caching.md from freshness_table()"


def test_every_declared_resource_is_routed_as_a_get() -> None:
    routes = application.app.routes
    for resource in resources.RESOURCES:
        assert "GET" in routes[resource.path], resource.path
    assert len({r.name for r in resources.RESOURCES}) == len(resources.RESOURCES)


def test_overrides_apply_by_name_and_a_typo_is_refused() -> None:
    cache = _offline_cache(CACHE_TTL_SLOTS="7", CACHE_STALE_DASHBOARD="9")
    assert cache.policy("slots").fresh_s == 7.0 and cache.policy("slots").critical
    assert cache.policy("dashboard").stale_s == 9.0 and not cache.policy("dashboard").critical
    assert cache.policy("departments").fresh_s == resources.DEPARTMENTS.freshness.fresh_s
    with pytest.raises(ValueError, match=r"SLOT \(cached resources: APPOINTMENTS, DASHBOARD"):
        policies_from(declared_freshness(), CacheSettings(fresh_overrides={"slot": 5.0}))
    with pytest.raises(SettingsError, match="CACHE_TTL_SLOTS=soon: must be a number of seconds"):
        load_settings({"CACHE_TTL_SLOTS": "soon"})


def test_prewarmed_keys_are_the_keys_routes_plan() -> None:
    cache = _offline_cache()
    today = dt.datetime.now(dt.timezone.utc).date()
    warmed = {key.body: key for key, _ in resources.hot_reads(cache.keys, 3, today)}
    asked = [(resources.DASHBOARD, {}), (resources.DEPARTMENTS, {}), (resources.DOCTORS, {}),
             (resources.SLOTS, {"date": str(today)}), (resources.SLOTS, {"date": str(today + dt.timedelta(days=1))})]
    planned = [r.plan(cache, _caller(tenant=3), {"clientId": "3", **params}).key for r, params in asked]
    assert {k.body: k for k in planned} == warmed


def test_a_plan_checks_tenant_role_and_narrows_a_patient() -> None:
    cache = _offline_cache()
    with pytest.raises(ApiError) as other_tenant:
        resources.DEPARTMENTS.plan(cache, _caller(tenant=2), {"clientId": "1"})
    assert other_tenant.value.status == 403
    with pytest.raises(ApiError) as patient_dashboard:
        resources.DASHBOARD.plan(cache, _caller("patient", patient_id=5), {"clientId": "1"})
    assert patient_dashboard.value.status == 403
    own = resources.APPOINTMENTS.plan(cache, _caller("patient", patient_id=5), {"clientId": "1", "date": "2026-12-02"})
    assert re.search(r"patientId=5", own.key.body) and own.policy.name == "appointments"


def test_keys_differ_by_tenant_and_parameters() -> None:
    keys = KeySpace("unit")
    a = resources.SLOTS.key(keys, _slots(1, 7))
    assert a != resources.SLOTS.key(keys, _slots(2, 7))
    assert a != resources.SLOTS.key(keys, _slots(1, 8))
    assert a.versions == (keys.version(1, f"slots:{dt.datetime.now(dt.timezone.utc).date()}:d7"),)


def _slots(tenant: int, doctor: int):  # type: ignore[no-untyped-def]
    from chalicelib.booking.models import SlotsQuery
    return SlotsQuery(clientId=tenant, date=dt.datetime.now(dt.timezone.utc).date(), doctorId=doctor)


def test_a_stale_life_of_a_week_or_more_is_refused() -> None:
    from chalicelib.cache.keys import VERSION_TTL_S

    with pytest.raises(ValueError, match="CACHE_STALE_DEPARTMENTS must be shorter than"):
        policies_from(declared_freshness(), CacheSettings(stale_overrides={"departments": VERSION_TTL_S}))
    policies_from(declared_freshness(), CacheSettings(stale_overrides={"departments": VERSION_TTL_S - 1}))
