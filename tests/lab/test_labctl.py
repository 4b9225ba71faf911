"""labctl's parts that need no running lab: stale artifacts rebuilt, the load balancer's check, new secrets and
endpoints. (tests/e2e drives labctl itself.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "lab" / "payment_service"

pytestmark = pytest.mark.timeout(120)


def artifact_digests(state: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted((state / "artifacts").glob("payment-service-*"))}


def test_artifacts_are_rebuilt_only_when_the_source_changed(labctl: ModuleType, tmp_path: Path) -> None:
    state, source = tmp_path / "state", tmp_path / "src"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__"))
    assert labctl.build_artifacts(state, source) == ["1.0.0", "1.1.0", "1.1.1"]
    first = artifact_digests(state)
    assert labctl.build_artifacts(state, source) == []  # same source: nothing written
    assert artifact_digests(state) == first
    check = subprocess.run(["sha256sum", "-c", "payment-service-1.1.0.tar.gz.sha256"], cwd=state / "artifacts",
                           capture_output=True, check=False)
    assert check.returncode == 0

    with (source / "payment_service" / "health.py").open("a") as module:
        module.write("\n# a change of the service\n")
    assert labctl.build_artifacts(state, source) == ["1.0.0", "1.1.0", "1.1.1"]
    changed = artifact_digests(state)
    assert not set(changed.values()) & set(first.values())
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--all", "--source", str(source),
                    "--output-dir", str(fresh)], check=True, capture_output=True)
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(fresh.iterdir())} == changed

    (state / "artifacts" / "payment-service-1.0.0.tar.gz").write_bytes(b"damaged")
    assert labctl.build_artifacts(state, source) == ["1.0.0"]
    assert artifact_digests(state) == changed


def test_haproxy_checks_the_lb_endpoint_and_forwards_the_client(labctl: ModuleType, tmp_path: Path) -> None:
    topo = labctl.load_topology()
    tls = tmp_path / "tls"  # the HTTPS frontends' certificate and key (ensure_tls makes the lab CA's)
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tls / "lb.key"), "-out", str(tls / "lb.pem"), "-subj", "/CN=lb1.payments.lab",
                    "-days", "1"], check=True, capture_output=True)
    labctl.write_haproxy_bundle(tls)
    assert oct((tls / "haproxy.pem").stat().st_mode & 0o777) == "0o600"
    config = labctl.render_haproxy(tmp_path, topo).read_text()
    for name in ("production_https", "staging_https"):
        assert f"bind 127.0.0.1:{topo['ports'][name]} ssl crt {tls / 'haproxy.pem'} ssl-min-ver TLSv1.2" in config
    backends = config.split("\nbackend ")[1:]
    assert len(backends) == 4
    for backend in backends:
        assert "option httpchk GET /healthz/lb\n" in backend and "/readyz" not in backend
    assert "    option forwardfor\n" in config.split("\nfrontend ")[0]  # in the defaults
    config_path = tmp_path / "hosts" / topo["lb"] / "etc" / "haproxy" / "haproxy.cfg"
    check = subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", str(config_path)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    kept = labctl.render_haproxy(tmp_path, topo, keep_existing=True)
    kept.write_text("# running configuration\n")
    assert labctl.render_haproxy(tmp_path, topo, keep_existing=True).read_text() == "# running configuration\n"


def test_an_older_state_gains_the_smoke_key(labctl: ModuleType, tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"api_key": "pk_lab_old", "admin_key": "ak_lab_old"}))
    created = labctl.ensure_secrets(tmp_path)
    assert created["smoke_key"].startswith("smk_lab_") and created["api_key"] == "pk_lab_old"
    assert len({created["smoke_key"], created["api_key"], created["admin_key"]}) == 3
    assert labctl.ensure_secrets(tmp_path) == created  # generated once
    assert secrets_file.stat().st_mode & 0o077 == 0


def test_status_names_the_smtp_sink_and_its_mailbox(labctl: ModuleType, tmp_path: Path) -> None:
    info = labctl.endpoints(tmp_path, labctl.load_topology())
    assert info["smtp_url"] == "smtp://127.0.0.1:25025"
    assert info["mailbox_url"] == "http://127.0.0.1:25026"
    conf = labctl.render_lab_supervisor(tmp_path, labctl.load_topology(), labctl.ensure_secrets(tmp_path)).read_text()
    program = conf.split("[program:smtp]\n")[1].split("\n\n")[0]
    assert f"-m smtp_sink --smtp-port 25025 --http-port 25026 --maildir {tmp_path / 'mail'}" in program
    # status counts a lab as running only with every program up renders (an older lab lacks the sink).
    rendered = {line[len("[program:"):-1] for line in conf.splitlines() if line.startswith("[program:")}
    assert rendered == {*labctl.LAB_PROGRAMS, *(f"host-{host}" for host in labctl.load_topology()["apps"])}


def test_a_second_lab_gets_every_port_moved_and_its_own_inventory(labctl: ModuleType, tmp_path: Path) -> None:
    base = labctl.load_topology(labctl.INVENTORY)
    inventory = labctl.write_moved_inventory(tmp_path, 200)
    moved = labctl.load_topology(inventory)
    assert moved["ports"] == {name: port + 200 for name, port in base["ports"].items()}
    assert {host: app["ports"] for host, app in moved["apps"].items()} == \
        {host: {colour: port + 200 for colour, port in app["ports"].items()} for host, app in base["apps"].items()}
    assert not labctl.all_ports(moved) & labctl.all_ports(base)
    assert labctl.inventory_dir(tmp_path) == inventory
    assert labctl.endpoints(tmp_path, moved)["inventory"] == str(inventory / "hosts.yml")
    # Ansible reads the copy: the host's ports and every URL built from lab_ports are the second lab's.
    shown = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory / "hosts.yml"),
                            "--host", "app1"], capture_output=True, text=True, check=True, cwd=tmp_path)
    hostvars = json.loads(shown.stdout)
    assert hostvars["payments_colour_ports"] == {c: p + 200 for c, p in base["apps"]["app1"]["ports"].items()}
    assert hostvars["lab_state_dir"] == str(tmp_path)
    assert hostvars["lab_ports"]["stripe"] == base["ports"]["stripe"] + 200


@pytest.mark.parametrize("offset", [0, -5, 100, 70000])
def test_an_offset_onto_the_first_labs_ports_is_refused(labctl: ModuleType, tmp_path: Path, offset: int) -> None:
    with pytest.raises(SystemExit, match="choose another"):
        labctl.write_moved_inventory(tmp_path, offset)
    assert not (tmp_path / "inventory").exists()
