"""The S3 repository for real: payments.deploy.pgbackrest with pgbackrest_repo_type=s3 against an S3 endpoint over TLS
(moto behind HAProxy, a certificate from a throw-away CA). The stanza, WAL archiving, a full and an incremental backup
land encrypted in the bucket; a point-in-time restore comes back from it; a CA that does not sign the endpoint, a wrong
secret key, a certificate for another host name and a missing bucket fail clearly before anything changes."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from pgbackrest_playbook import play, role_vars, run_playbook, task_results
from pgbackrest_world import Cluster, Repo, free_port, make_world, run_module
from pitr_world import Deployed, marked_rows, restore_args
from s3_tls_world import S3TlsWorld
from unit.tls_servers import Pki

SETUP = {"name": "Set up the stanza", "ansible.builtin.include_role": {"name": "payments.deploy.pgbackrest"}}
HISTORY_ROWS = 300000


def deploy_task(restore_point: str) -> dict[str, t.Any]:
    return {"name": "Back up for the deploy", "ansible.builtin.include_role": {"name": "payments.deploy.pgbackrest", "tasks_from": "deploy"},
            "vars": {"pgbackrest_restore_point": restore_point}}


def show(variable: str) -> dict[str, t.Any]:
    return {"name": f"Show {variable}", "ansible.builtin.debug": {"var": variable}}


def role_repo(cluster: Cluster, variables: dict[str, t.Any], cipher_pass: str) -> Repo:
    """The repository the role configured, read with its own configuration files."""
    repo = Repo(cluster.base, cluster)
    repo.config = Path(variables["pgbackrest_config_path"])
    repo.include = Path(variables["pgbackrest_config_include_path"])
    repo.cipher_pass = cipher_pass
    return repo


class S3Deployed(t.NamedTuple):
    s3: S3TlsWorld
    deployed: Deployed
    variables: dict[str, t.Any]
    output: str
    results: dict[str, dict[str, t.Any]]


@pytest.fixture(scope="module")
def s3() -> t.Iterator[S3TlsWorld]:
    directory = Path(tempfile.mkdtemp(prefix="pgbackrest-s3-tls-"))
    world = S3TlsWorld(directory)
    try:
        world.start()
        yield world
    finally:
        world.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_deployed(s3: S3TlsWorld, collections_dir: Path) -> t.Iterator[S3Deployed]:
    """The role sets the stanza up in the bucket and takes a deploy's backup and restore point between a row written
    before it and one written after it."""
    base, cluster, dummy = make_world("pgbackrest-s3-")
    try:
        cluster.sql(f"CREATE TABLE payment_history AS SELECT g AS id, md5(g::text) AS ref, now() AS at FROM generate_series(1, {HISTORY_ROWS}) g")
        cipher_pass = secrets.token_urlsafe(30)
        variables = {**role_vars(cluster, cipher_pass), **s3.role_vars()}
        marker = secrets.token_hex(6)
        cluster.sql(f"INSERT INTO payments VALUES (900001, 1, 'before {marker}')")
        rc, report, output = run_playbook(collections_dir, base, play(
            [SETUP, show("pgbackrest_stanza_result"), deploy_task(f"deploy-{marker}"), show("pgbackrest_deploy_result")], variables), "-vvv")
        assert rc == 0, output[-4000:]
        cluster.sql(f"INSERT INTO payments VALUES (900002, 2, 'after {marker}')")
        cluster.sql("SELECT pg_switch_wal()")
        results = task_results(report)
        deploy = results["Show pgbackrest_deploy_result"]["pgbackrest_deploy_result"]
        point = deploy["restore_point"]
        journal = {"stanza": "payments", "backup_label": deploy["backup"]["label"], "restore_point": point["name"],
                   "restore_point_lsn": point["lsn"], "restore_point_time": point["time"], "wal_segment": point["wal_segment"]}
        repo = role_repo(cluster, variables, cipher_pass)
        yield S3Deployed(s3, Deployed(cluster, repo, journal, marker), variables, output, results)
    finally:
        for data in base.glob("data*"):
            if (data / "postmaster.pid").exists():
                Cluster(base, name=data.name, port=cluster.port).stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_role_archives_and_backs_up_into_the_bucket_over_tls(s3_deployed: S3Deployed) -> None:
    s3, deployed, variables = s3_deployed.s3, s3_deployed.deployed, s3_deployed.variables
    cluster, repo = deployed.cluster, deployed.repo
    for secret in (s3.key_secret, repo.cipher_pass):
        assert secret not in s3_deployed.output, "no secret in the output, even at -vvv"

    config = repo.config.read_text(encoding="utf-8")
    assert {"repo1-type=s3", f"repo1-storage-port={s3.port}", f"repo1-storage-ca-file={s3.ca_file}", "repo1-storage-verify-tls=y",
            "repo1-s3-uri-style=path", "repo1-s3-endpoint=localhost"} <= set(config.splitlines())
    assert s3.key_secret not in config and s3.key_secret in (repo.include / "secrets.conf").read_text(encoding="utf-8")

    stanza = s3_deployed.results["Show pgbackrest_stanza_result"]["pgbackrest_stanza_result"]
    assert stanza["stanza_created"] is True and stanza["backup"]["type"] == "full"
    archived, failed = cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
    assert int(archived) >= 3 and failed == "0", "archive_command pushed the WAL to S3 without a failure"

    backups = repo.backups()
    assert [b["type"] for b in backups] == ["full", "incr"]
    assert backups[-1]["label"] == deployed.journal["backup_label"]

    objects = s3.objects()
    stanza_path = "payments"  # repo1-path=/<stanza>
    assert {f"{stanza_path}/backup/payments/backup.info", f"{stanza_path}/archive/payments/archive.info"} <= set(objects)
    segment = deployed.journal["wal_segment"]
    assert any(key.startswith(f"{stanza_path}/archive/payments/15-1/{segment[:16]}/{segment}-") for key in objects), sorted(objects)[:20]
    for backup in backups:
        assert any(key.startswith(f"{stanza_path}/backup/payments/{backup['label']}/") for key in objects), backup["label"]


def test_the_objects_in_the_bucket_are_encrypted(s3_deployed: S3Deployed) -> None:
    s3, repo, marker = s3_deployed.s3, s3_deployed.deployed.repo, s3_deployed.deployed.marker
    objects = s3.objects()
    # what backup.info holds in plain text, read back through pgBackRest with the cipher pass
    plain = repo.pgbackrest("repo-get", "backup/payments/backup.info")
    assert plain.returncode == 0 and "[backup:current]" in plain.stdout, plain.stderr
    assert all(body.startswith(b"Salted__") for key, body in objects.items() if not key.endswith("/")), "every object is aes-256-cbc"
    for needle in (b"[backup:current]", b"[backrest]", marker.encode(), b"payment_history"):
        assert not any(needle in body for body in objects.values()), needle


def test_a_point_in_time_restore_comes_back_from_the_bucket(s3_deployed: S3Deployed, collections_dir: Path) -> None:
    deployed = s3_deployed.deployed
    cluster, marker = deployed.cluster, deployed.marker
    assert [row[0] for row in marked_rows(cluster, marker)] == ["900001", "900002"]
    result = run_module(collections_dir, "pgbackrest_restore", restore_args(deployed, scratch_port=free_port()))
    assert result.get("failed") is not True, result.get("msg")
    assert result["swapped"] is True and result["backup_set"] == deployed.journal["backup_label"]
    assert marked_rows(cluster, marker) == [["900001", f"before {marker}"]], "the row before the restore point, not the one after"
    assert cluster.sql("SELECT count(*) FROM payment_history") == [[str(HISTORY_ROWS)]]
    size = cluster.sql("SELECT pg_database_size('postgres')")[0][0]
    stanza = s3_deployed.results["Show pgbackrest_stanza_result"]["pgbackrest_stanza_result"]
    full = next(c["seconds"] for c in stanza["commands"] if c["purpose"] == "take the first full backup")
    print(f"\nS3 over TLS, database {int(size) / 2**20:.1f} MB: full backup {full:.2f} s; restore timings {result['timings']}")


@pytest.fixture(scope="module")
def bystander(s3: S3TlsWorld) -> t.Iterator[tuple[Cluster, dict[str, t.Any]]]:
    """A cluster that does not archive yet, and its role variables for the endpoint, for the failures: none may change it.
    Its stanza is its own: the bucket already holds the deployed cluster's `payments` stanza, under another cipher pass."""
    base, cluster, dummy = make_world("pgbackrest-s3-refused-")
    try:
        yield cluster, {**role_vars(cluster, secrets.token_urlsafe(30)), **s3.role_vars(), "pgbackrest_stanza": "bystander"}
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def untrusted_ca(s3: S3TlsWorld) -> dict[str, t.Any]:
    """A CA that did not sign the endpoint's certificate."""
    other = Pki(s3.directory / "other-ca", ca_name="Another Test CA")
    for path in (other.directory, other.ca_path):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return {"pgbackrest_s3_ca_file": str(other.ca_path)}


FAILURES: dict[str, tuple[t.Callable[[S3TlsWorld], dict[str, t.Any]], list[str]]] = {
    "untrusted_ca": (untrusted_ca, ["TLS", "certificate", "unable to verify certificate presented by 'localhost:"]),
    # signed by the trusted CA, but for another host name: refused all the same
    "certificate_for_another_name": (lambda s3: {"pgbackrest_s3_port": s3.wrong_name_port},
                                     ["TLS: the S3 endpoint's certificate does not name the host connected to",
                                      "unable to find hostname 'localhost'"]),
    "wrong_secret_key": (lambda s3: {"pgbackrest_s3_key_secret": "W" + s3.key_secret[1:]}, ["S3 answered SignatureDoesNotMatch"]),
    "missing_bucket": (lambda s3: {"pgbackrest_s3_bucket": "payments-pgbackrest-missing"}, ["S3 answered NoSuchBucket", "bucket does not exist"]),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_an_unusable_s3_repository_fails_clearly_and_changes_nothing(case: str, s3: S3TlsWorld, bystander: tuple[Cluster, dict[str, t.Any]],
                                                                     collections_dir: Path) -> None:
    cluster, variables = bystander
    change, expected = FAILURES[case]
    # pgBackRest retries a connection until io-timeout (60 s by default): 5 s keeps the test short
    variables = {**variables, **change(s3), "pgbackrest_options": {"io-timeout": 5}}
    objects = s3.objects()
    settings = cluster.sql("SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command') ORDER BY name")
    rc, report, output = run_playbook(collections_dir, cluster.base, play([SETUP], variables), "-vvv")
    assert rc != 0
    result = task_results(report)["payments.deploy.pgbackrest : Archive the WAL, create and check the stanza, take the first full backup"]
    assert result["failed"] is True and result["changed"] is False
    print(f"\n{case}: {result['msg'][:400]}")
    for words in expected:
        assert words in result["msg"], result["msg"]
    for secret in (s3.key_secret, variables["pgbackrest_s3_key_secret"], variables["pgbackrest_cipher_pass"]):
        assert secret not in output, "no secret key in the output, even at -vvv"
    assert not [c for c in result["commands"] if c["purpose"] in ("set archive_mode", "create the stanza", "take the first full backup")]
    assert cluster.sql("SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command') ORDER BY name") == settings
    assert settings[1][1] == "off", "the cluster does not archive"
    assert s3.objects() == objects, "nothing written to the bucket"
    assert "payments-pgbackrest-missing" not in [b["Name"] for b in s3.s3().list_buckets()["Buckets"]]


def test_check_mode_against_the_bucket_says_what_it_would_do_and_writes_nothing(s3: S3TlsWorld, bystander: tuple[Cluster, dict[str, t.Any]],
                                                                                collections_dir: Path) -> None:
    cluster, variables = bystander
    objects = s3.objects()
    settings = cluster.sql("SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command') ORDER BY name")
    config = Path(variables["pgbackrest_config_path"])  # the refused runs above may have left one with other settings
    config_before = config.read_text(encoding="utf-8") if config.exists() else None
    rc, report, output = run_playbook(collections_dir, cluster.base, play([SETUP], variables), "--check")
    assert rc == 0, output[-4000:]
    result = task_results(report)["payments.deploy.pgbackrest : Archive the WAL, create and check the stanza, take the first full backup"]
    assert result["changed"] is True and result.get("failed") is not True
    print("\n" + "\n".join(f"{c['purpose']}: rc {c['rc']}" for c in result["commands"]))
    # what would change is listed, not run; what reads the repository ran (against the bucket, with the rendered settings)
    would = [c for c in result["commands"] if c["purpose"] in ("set archive_mode", "create the stanza", "take the first full backup")]
    assert len(would) == 3 and all(c["rc"] is None for c in would), would
    assert cluster.sql("SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command') ORDER BY name") == settings
    assert s3.objects() == objects, "nothing written to the bucket"
    assert (config.read_text(encoding="utf-8") if config.exists() else None) == config_before, "no configuration written"
    assert s3.key_secret not in output and variables["pgbackrest_cipher_pass"] not in output
    # the settings were rendered into a private directory for the check, removed afterwards
    [scratch] = {arg.split("=", 1)[1] for c in result["commands"] for arg in c["command"] if arg.startswith("--config=")}
    assert "pgbackrest-check-" in scratch and not Path(scratch).parent.exists()
    # and the check did read the bucket with them: a wrong secret key fails the check run, as it would the real one
    wrong = {**variables, "pgbackrest_s3_key_secret": "W" + s3.key_secret[1:], "pgbackrest_options": {"io-timeout": 5}}
    rc, report, output = run_playbook(collections_dir, cluster.base, play([SETUP], wrong), "--check")
    assert rc != 0
    failed = task_results(report)["payments.deploy.pgbackrest : Archive the WAL, create and check the stanza, take the first full backup"]
    assert "S3 answered SignatureDoesNotMatch" in failed["msg"], failed["msg"]
    assert s3.objects() == objects
    assert not list(Path(scratch).parent.parent.glob("pgbackrest-check-*")), "the private directory is removed after a failure too"
