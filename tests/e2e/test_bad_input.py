"""Bad input fails with a clear message before the switch, and production keeps serving the old release."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from helpers import live, lock_file, map_colour, other_release, sign_off_releases, versions_or_nothing

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def before(lab, playbook):
    """Production's state before a bad run: live versions, map colour and the idle colour's answers, and the lab's other
    release ("other"), which a bad run tries to deploy: without the bad input it would switch colours."""
    if len(versions_or_nothing(lab["production_url"])) != 1:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
    colour = map_colour(lab["haproxy_map_file"])
    versions = live(lab["production_url"])[0]
    return {"versions": versions, "colour": colour, "idle": idle_versions(lab, colour),
            "other": other_release(next(iter(versions)))}


def idle_versions(lab: dict, live_colour: str) -> list[str]:
    """What the idle colour of each production app host answers ("down" when it runs nothing)."""
    idle = "green" if live_colour == "blue" else "blue"
    hosts = yaml.safe_load(Path(lab["inventory"]).read_text())["all"]["children"]
    answers = []
    for host in hosts["production_app"]["hosts"].values():
        url = f"http://127.0.0.1:{host['payments_colour_ports'][idle]}/version"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                answers.append(json.load(answer)["version"])
        except urllib.error.URLError:
            answers.append("down")
    return answers


def assert_untouched(lab, before) -> None:
    assert not lock_file(lab).exists(), "a failed run left the deploy lock behind"
    assert live(lab["production_url"])[0] == before["versions"]
    assert map_colour(lab["haproxy_map_file"]) == before["colour"]
    assert idle_versions(lab, before["colour"]) == before["idle"]


def test_unknown_version(lab, playbook, before):
    run = playbook("deploy.yml", "-e", "release_version=9.9.9")
    assert run.rc != 0
    assert "Release payment-service 9.9.9 is not published" in run.text
    assert "nothing was changed" in run.text
    assert "Switch traffic" not in run.text
    assert_untouched(lab, before)


@pytest.mark.extended
def test_malformed_version_is_reported_with_other_problems(lab, playbook, before):
    run = playbook("deploy.yml", "-e", "release_version=latest")
    assert run.rc != 0
    assert "release_version must be set to X.Y.Z (got latest)" in run.text
    assert_untouched(lab, before)


@pytest.fixture
def tampered_release(lab):
    """Release 1.2.0 published with a checksum that its tarball does not match."""
    artifacts = Path(lab["state_dir"]) / "artifacts"
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", "1.2.0",
                    "--output-dir", str(artifacts)], check=True, capture_output=True)
    sign_off_releases(lab)  # production's sign-offs are for the published artifact: the install must find the change
    tarball = artifacts / "payment-service-1.2.0.tar.gz"
    published = (artifacts / "payment-service-1.2.0.tar.gz.sha256").read_text().split()[0]
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in transit
    tarball.write_bytes(bytes(data))
    assert hashlib.sha256(data).hexdigest() != published
    yield tarball
    for path in artifacts.glob("payment-service-1.2.0.*"):
        path.unlink()


def test_artifact_with_wrong_checksum(lab, playbook, before, tampered_release):
    run = playbook("deploy.yml", "-e", "release_version=1.2.0", "-e", "staging_gate_override=checksum-test")
    assert run.rc != 0
    assert "payment-service-1.2.0.tar.gz was refused" in run.text
    assert "does not match its published sha256" in run.text
    assert_untouched(lab, before)
    for host in ("app1", "app2"):
        releases = Path(lab["state_dir"]) / "hosts" / host / "opt" / "payments" / "releases"
        assert not (releases / "1.2.0").exists()


@pytest.fixture
def inventory_without_ports(lab, tmp_path):
    """A copy of the lab inventory where app2 lost payments_colour_ports."""
    copy = tmp_path / "inventory"
    shutil.copytree(Path(lab["inventory"]).parent, copy)
    hosts_file = copy / "hosts.yml"
    hosts = yaml.safe_load(hosts_file.read_text())
    hosts["all"]["children"]["production_app"]["hosts"]["app2"] = None
    hosts_file.write_text(yaml.safe_dump(hosts))
    return copy / "hosts.yml"


@pytest.mark.extended
def test_missing_inventory_variable(lab, playbook, before, inventory_without_ports):
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", inventory=inventory_without_ports,
                   env={"PAYMENTS_LAB_DIR": lab["state_dir"]})
    assert run.rc != 0
    assert "Preflight found 1 problem(s); nothing was changed: app2: payments_colour_ports must define blue and green" \
        in run.text
    assert_untouched(lab, before)


def test_new_inputs_are_checked_together(lab, playbook, before):
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", "-e", "smoke_test_payment_amount=5000",
                   "-e", "smoke_test_p95_threshold=0", "-e", "smoke_test_mailbox_url=ftp://mail",
                   "-e", "deploy_lock_lease_seconds=2", "-e", '{"staging_gate_override": " "}',
                   "-e", '{"traffic_frontend_urls": {"production": "http://u:p@127.0.0.1:1", "staging": "x"}}')
    assert run.rc != 0
    assert "Preflight found 7 problem(s); nothing was changed" in run.text
    for text in ("smoke_test_payment_amount 5000 is above the cap smoke_test_payment_amount_cap 100",
                 "smoke_test_p95_threshold must be a number of seconds above 0",
                 "smoke_test_mailbox_url must be an http(s) URL",
                 "deploy_lock_lease_seconds must be a whole number of seconds from 10 to 86400 (got 2)",
                 "staging_gate_override needs a reason",
                 "traffic_frontend_urls.production must be an http(s) URL without credentials",
                 "traffic_frontend_urls.staging must be an http(s) URL"):
        assert text in run.text, text
    assert_untouched(lab, before)


@pytest.mark.extended
def test_certificate_expiring_within_the_minimum_stops_the_deploy(lab, playbook, before):
    """The lab's certificates are valid for a year: asking for 400 days left makes both fail, before anything changes."""
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", "-e", "preflight_tls_min_days_valid=400")
    assert run.rc != 0
    assert "Preflight: 2 of 2 TLS endpoint(s) fail the certificate check; nothing was changed." in run.text
    assert re.search(r"production frontend \(127\.0\.0\.1:\d+\): the certificate expires on [0-9-]+ [0-9:]+ UTC, "
                     r"in \d+ days: less than min_days_valid \(400\)", run.text), run.text[-3000:]
    assert re.search(r"database \(127\.0\.0\.1:\d+\): the certificate expires on", run.text)
    assert "Switch traffic" not in run.text and "Install the release files" not in run.text
    assert_untouched(lab, before)


@pytest.mark.extended
def test_certificate_for_another_name_stops_the_deploy(lab, playbook, before):
    endpoints = [{"name": "frontend", "host": "127.0.0.1", "port": int(lab["production_https_url"].rsplit(":", 1)[1]),
                  "server_name": "pay.payments.lab"}]
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", "-e", json.dumps({"preflight_tls_endpoints": endpoints}))
    assert run.rc != 0
    assert "Preflight: 1 of 1 TLS endpoint(s) fail the certificate check; nothing was changed." in run.text
    assert "the certificate does not match the name pay.payments.lab" in run.text
    assert_untouched(lab, before)


def test_a_key_of_another_stripe_account_is_refused_on_every_host(lab, playbook, before):
    # The emulator's keys belong to its one account: pinning another makes every app host's key wrong.
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", "-e", "payments_stripe_account_id=acct_SomeoneElse0001")
    assert run.rc != 0
    for host in ("app1", "app2"):
        assert f"production (app host {host}) expects account acct_SomeoneElse0001" in run.text
    assert "belongs to acct_1PaymentsLab0001" in run.text
    assert lab["secrets"]["stripe_live_key"] not in run.output
    assert_untouched(lab, before)


@pytest.mark.extended
def test_production_without_a_pinned_stripe_account_is_refused(lab, playbook, before):
    run = playbook("deploy.yml", "-e", f"release_version={before['other']}", "-e", "payments_stripe_account_id=")
    assert run.rc != 0
    assert "production needs its Stripe account pinned: set payments_stripe_account_id (acct_...) for app1, app2" in run.text
    assert_untouched(lab, before)


@pytest.mark.parametrize("strategy, says", [
    ("physical", "restore_strategy must be auto, logical or pgbackrest, not physical. Nothing was changed."),
    # the lab's deploys take logical backups: the journal names no pgBackRest restore point to go back to
    ("pgbackrest", "No pgBackRest restore point to restore for production"),
])
def test_a_restore_strategy_that_cannot_be_followed_changes_nothing(lab, playbook, before, strategy, says):
    run = playbook("restore.yml", "-e", f"restore_strategy={strategy}")
    assert run.rc != 0
    assert says in run.text
    assert "PLAY [Restore the database and re-ingest Stripe events]" not in run.text
    assert_untouched(lab, before)
