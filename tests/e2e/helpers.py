"""Small helpers shared by the end-to-end tests."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def live(url: str, samples: int = 12) -> tuple[set[str], set[str]]:
    """Versions and instances that answer through a frontend."""
    versions, instances = set(), set()
    for _request in range(samples):
        with urllib.request.urlopen(f"{url}/version", timeout=5) as answer:
            body = json.load(answer)
        versions.add(body["version"])
        instances.add(body["instance"])
    return versions, instances


def versions_or_nothing(url: str) -> set[str]:
    """The versions live through a frontend; empty when nothing answers (a new lab)."""
    try:
        return live(url)[0]
    except (urllib.error.URLError, OSError):
        return set()


def map_colour(map_file: str, key: str = "production") -> str:
    for line in Path(map_file).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return parts[1]
    raise AssertionError(f"{key} not in {map_file}")


def journal(lab: dict, kind: str, environment: str = "production") -> dict:
    """The last journal record of a kind (deploy, rollback) that the playbooks wrote on the load balancer."""
    path = Path(lab["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment
    return json.loads((path / f"last-{kind}.json").read_text())


def has_column(lab: dict, table: str, column: str, database: str = "payments") -> bool:
    """Whether the lab's database has the column (read with the service's own credentials)."""
    import psycopg  # pylint: disable=import-outside-toplevel

    dsn = lab["postgres_dsn"].rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(dsn, password=lab["secrets"]["postgres_password"], connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                           (table, column)).fetchone()
    return bool(row and row[0])


def stripe_intents(lab: dict, ids: list[str]) -> list:
    """The PaymentIntents as Stripe (the lab's emulator) has them, with their latest charge, in live mode."""
    import stripe  # pylint: disable=import-outside-toplevel

    client = stripe.StripeClient(lab["secrets"]["stripe_live_key"], base_addresses={"api": lab["stripe_api"]})
    return [client.v1.payment_intents.retrieve(i, {"expand": ["latest_charge"]}) for i in ids]


def query(lab: dict, sql: str, database: str = "payments") -> list[tuple]:
    """Rows of a query on the lab's database, with the service's credentials."""
    import psycopg  # pylint: disable=import-outside-toplevel

    dsn = lab["postgres_dsn"].rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(dsn, password=lab["secrets"]["postgres_password"], connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def journal_dir(lab: dict, environment: str = "production") -> Path:
    return Path(lab["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment


def history(lab: dict, environment: str = "production") -> list[dict]:
    """Every journal record of an environment, oldest first."""
    path = journal_dir(lab, environment) / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def published_sha256(lab: dict, version: str) -> str:
    return (Path(lab["state_dir"]) / "artifacts" / f"payment-service-{version}.tar.gz.sha256").read_text().split()[0]


def passed_staging(lab: dict, version: str, max_age: float = 6 * 86400) -> bool:
    """Whether staging's journal holds a recent deploy of this artifact whose smoke tests and load test passed (what
    production's staging gate asks by default)."""
    sha256 = published_sha256(lab, version)
    return any(r.get("kind") == "deploy" and r.get("release_sha256") == sha256 and r.get("smoke", {}).get("passed")
               and (r.get("load_test") or {}).get("passed") is True and time.time() - r.get("recorded_epoch", 0) < max_age for r in history(lab, "staging"))


def lock_file(lab: dict, environment: str = "production") -> Path:
    return journal_dir(lab, environment) / "deploy.lock"


def lab_program(lab: dict, action: str, program: str) -> None:
    """Start or stop one of the lab's servers (stripe, redis, ...) through the lab's supervisor."""
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([str(repo / ".venv" / "bin" / "supervisorctl"), "-c", f"{lab['state_dir']}/supervisord.conf",
                    action, program], check=True, capture_output=True, text=True, timeout=60)


def http(method: str, url: str, token: str = "", body: dict | None = None, headers: dict | None = None):
    """(status, headers with lower-case names, parsed JSON or text) of one request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Authorization": f"Bearer {token}"} if token else {}),
        **({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, head, raw = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, error.headers, error.read()
    head = {name.lower(): value for name, value in head.items()}
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode(errors="replace")


def smoke_payments(record: dict) -> list[str]:
    """The PaymentIntents of a deploy's smoke tests (the idle colour's, then the frontend's)."""
    smoke = record["smoke"]
    return [*smoke["colour"]["payments"], *smoke["frontend"]["payments"]]


def other_release(version: str) -> str:
    """The lab's other release: a deploy of it always switches colours."""
    return "1.0.0" if version == "1.1.0" else "1.1.0"


def sign_off_releases(lab: dict) -> None:
    """Production's sign-offs for every release in the lab's artifacts, as `labctl up` writes them (lab/signoffs.py):
    for a release a test built after the lab started."""
    import release_attestation  # pylint: disable=import-outside-toplevel  # lab/, on sys.path through conftest
    import signoffs  # pylint: disable=import-outside-toplevel
    state = Path(lab["state_dir"])
    # the signed test attestation beside each artifact, as the lab's release run writes it (production checks it)
    release_attestation.main(["--artifacts-dir", str(state / "artifacts"), "--sign-key", str(state / "signing" / "release.key")])
    signoffs.write_signoffs(state)


def rollback_ready(lab: dict) -> str:
    """The live release when the journal's last deploy switched to it from another release (a rollback has something
    to go back to), else an empty string."""
    live = versions_or_nothing(lab["production_url"])
    path = journal_dir(lab) / "last-deploy.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    if len(live) == 1 and record.get("release_from") and record.get("release_to") in live \
            and record.get("colour_to") == map_colour(lab["haproxy_map_file"]):
        return live.pop()
    return ""
