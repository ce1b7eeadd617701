"""A process that served requests forks two children (as Lambda Managed Instances and prefork
servers do); all three keep serving reads and writes on real PostgreSQL and Redis at the same
time, with no shared socket and no protocol error, the fleet counts three containers, and the
parent's buffered audit event is written once, not once per copy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import AppEnv
from tests.data_finders import new_doctor_slots, new_patients

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in its own process: serve, fork twice, serve in all three at once, report.
SCRIPT = textwrap.dedent('''
    import json, os, sys, time, traceback
    from chalice.test import Client
    import app

    plan = json.loads(sys.argv[1])
    staff = {"Authorization": "Bearer " + plan["staff"], "Content-Type": "application/json"}
    client = Client(app.app, stage_name="dev", project_dir=plan["root"])

    def ok(response, status=200):
        assert response.status_code == status, (response.status_code, response.body[:300])
        return response.json_body

    def serve(slot, patient, rounds):
        for _ in range(rounds):
            ok(client.http.get("/api/departments?clientId=1", headers=staff))
            ok(client.http.get("/api/doctors?clientId=1", headers=staff))
        booked = ok(client.http.post("/api/appointments", headers=staff, body=json.dumps(
            {"clientId": 1, "slotId": slot, "patientId": patient})), 201)
        ok(client.http.post("/api/appointments/%d/cancel" % booked["appointment"]["id"], headers=staff,
                            body=json.dumps({"clientId": 1})))

    from chalicelib import runtime
    ok(client.http.get("/api/patients?clientId=1&q=a", headers=staff))  # one audited read, buffered
    serve(plan["slots"][0], plan["patients"][0], 5)
    children = []
    for k in (1, 2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                time.sleep(1.2)  # the inherited audit event is now due: a copy that kept it would write it
                serve(plan["slots"][k], plan["patients"][k], 200)
                with open(os.path.join(plan["out"], "child-%d" % k), "w") as out:
                    out.write(runtime.current().container_id)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)
    serve(plan["slots"][0], plan["patients"][0], 200)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    time.sleep(1.2)
    serve(plan["slots"][0], plan["patients"][0], 5)  # the parent's own connections still answer
    operator = {"Authorization": "Bearer " + plan["operator"]}
    stats = ok(client.http.get("/api/cache/stats", headers=operator))
    children = [open(os.path.join(plan["out"], name)).read() for name in sorted(os.listdir(plan["out"]))
                if name.startswith("child-")]
    with open(os.path.join(plan["out"], "report.json"), "w") as out:  # not stdout: the copies log there
        json.dump({"failed": failed, "containers": stats["fleet"]["containers"], "children": children,
                   "parent": runtime.current().container_id}, out)
''')


def test_forked_children_serve_beside_their_parent_as_new_containers(app_env: AppEnv, tmp_path) -> None:
    from chalicelib.auth import issue_token
    from tests.conftest import TEST_AUTH_SECRET

    slots = new_doctor_slots(app_env.sql, doctors=3)[0]
    before = app_env.sql("SELECT count(*) FROM audit_event WHERE action = 'patient_search'")[0][0]
    plan = {"root": ROOT, "out": str(tmp_path), "slots": slots, "patients": new_patients(app_env.sql, count=3),
            "staff": app_env.token(role="staff"), "operator": issue_token(TEST_AUTH_SECRET, 0, "operator")}
    env = {**os.environ, **app_env.env, "STATS_PUBLISH_INTERVAL": "0", "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(plan)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    report = json.loads((tmp_path / "report.json").read_text())
    children = report["children"]
    assert report["failed"] == [] and len(children) == 2, (done.stdout[-3000:], done.stderr[-3000:])
    assert len({report["parent"], *children}) == 3
    assert report["containers"] == 3
    assert "Error" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    after = app_env.sql("SELECT count(*) FROM audit_event WHERE action = 'patient_search'")[0][0]
    assert after - before == 1


def test_the_restore_hook_is_registered_with_snapstart_and_never_raises(app_env: AppEnv, monkeypatch) -> None:
    """SnapStart's runtime module (`snapshot_restore_py`, only in Lambda) stood in by a module
    that records the hook; a hook that raises would kill the restored environment."""
    import random
    import types

    from chalicelib import process_copy, runtime

    registered = []
    snapstart = types.ModuleType("snapshot_restore_py")
    snapstart.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", snapstart)
    monkeypatch.setattr(process_copy, "_installed", False)
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: None)
    process_copy.install()
    assert registered == [process_copy.start_as_new_container]

    parent = runtime.current()
    registered[0]()
    assert runtime.built() is None  # forgotten, not closed: its sockets are the parent's
    assert runtime.current().container_id != parent.container_id
    parent.close()  # here the "parent" is this test process: close what it opened

    def broken(*args: object) -> None:
        raise RuntimeError("inherited state in a bad way")

    monkeypatch.setattr(random, "seed", broken)
    registered[0]()  # logged, not raised
