"""The roles end to end with ansible-playbook: payments.deploy.pgbackrest sets up the stanza from inventory variables,
payments.deploy.backup with backup_strategy=pgbackrest takes the deploy's backup and restore point, and the rollback
(payments.deploy.restore in check mode, then payments.deploy.pgbackrest's restore) goes back to it from the journal;
secrets stay out of the output and of the main configuration file."""

from __future__ import annotations

import json
import secrets
import stat
import typing as t
from pathlib import Path

from pgbackrest_playbook import play, role_vars, run_playbook, task_results
from pgbackrest_world import OS_USER, Cluster, Repo, free_port

SETUP = {"name": "Set up the stanza", "ansible.builtin.include_role": {"name": "payments.deploy.pgbackrest"}}


def deploy_task(run_id: str, strategy: str = "pgbackrest") -> dict[str, t.Any]:
    return {"name": "Back up for the deploy", "ansible.builtin.include_role": {"name": "payments.deploy.backup"},
            "vars": {"backup_strategy": strategy, "backup_run_id": run_id, "backup_amcheck": False,
                     "backup_database_url": "postgresql:///postgres", "backup_encryption_key": "00" * 32}}


def role_repo(cluster: Cluster, variables: dict[str, t.Any]) -> Repo:
    """The repository the role configured, read with its own configuration files."""
    repo = Repo(cluster.base, cluster)
    repo.config = Path(variables["pgbackrest_config_path"])
    repo.include = Path(variables["pgbackrest_config_include_path"])
    return repo


def named(report: dict[str, t.Any], part: str) -> dict[str, t.Any]:
    """The result of the one task whose name holds ``part`` (a role's tasks are named ``role : task``)."""
    found = [result for name, result in task_results(report).items() if part in name]
    assert len(found) == 1, list(task_results(report))
    return found[0]


def test_roles_set_up_the_stanza_back_up_a_deploy_and_restore_it_from_the_journal(fresh: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster = fresh[0]
    cipher_pass = secrets.token_urlsafe(30)
    variables = role_vars(cluster, cipher_pass)
    run_id = "lab-1.4.2-" + secrets.token_hex(4)
    rc, report, output = run_playbook(collections_dir, cluster.base, play([SETUP, deploy_task(run_id), {
        "name": "Show the journal's facts", "ansible.builtin.debug": {"var": "backup_pgbackrest"}}], variables), "-vvv")
    assert rc == 0, output[-3000:]
    assert cipher_pass not in output, "the cipher pass never appears, even at -vvv"

    config = Path(variables["pgbackrest_config_path"]).read_text(encoding="utf-8")
    assert "repo1-cipher-type=aes-256-cbc" in config and cipher_pass not in config
    secret_file = Path(variables["pgbackrest_config_include_path"]) / "secrets.conf"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600 and secret_file.owner() == "postgres"
    assert cipher_pass in secret_file.read_text(encoding="utf-8")

    facts = task_results(report)["Show the journal's facts"]["backup_pgbackrest"]
    point = named(report, "as the ages require and mark the deploy with a restore point")["restore_point"]
    backups = role_repo(cluster, variables).backups()
    assert [b["type"] for b in backups] == ["full", "incr"]
    assert facts["backup_label"] == backups[-1]["label"] and facts["backup_type"] == "incr" and facts["backup_taken"] is True
    assert facts["restore_point"] == f"deploy-{run_id}" and facts["restore_point_lsn"]
    assert cluster.sql(f"SELECT pg_walfile_name('{facts['restore_point_lsn']}')") == [[facts["wal_segment"]]]
    assert facts["timings"]["total"] >= facts["timings"]["backup"]

    # the set-up again changes nothing
    rc, report, output = run_playbook(collections_dir, cluster.base, play([SETUP], variables))
    assert rc == 0, output[-3000:]
    assert report["stats"]["localhost"]["changed"] == 0, json.dumps(task_results(report), indent=1)[:3000]
    assert [b["label"] for b in role_repo(cluster, variables).backups()] == [b["label"] for b in backups]

    # the rollback on the same cluster: a row written after the deploy's restore point, then back to that point
    cluster.sql("INSERT INTO payments VALUES (900003, 3, 'after role')")
    runuser = ["runuser", "-u", OS_USER, "--"]
    variables.update(pgbackrest_restore_point=point["name"], pgbackrest_restore_point_lsn=point["lsn"], pgbackrest_restore_wal_segment=point["wal_segment"],
                     pgbackrest_restore_scratch_port=free_port(), pgbackrest_restore_backup_after="none", pgbackrest_recovery_timeout=120,
                     pgbackrest_stop_command=[*runuser, *cluster.pg_ctl("stop", "-m", "fast")], pgbackrest_start_command=[*runuser, *cluster.pg_ctl("start")])
    # the rollback's entry point (payments.deploy.restore, pgbackrest) in check mode: every check, the journal's time read, nothing moved
    journal = {"strategy": "pgbackrest", "stanza": "payments", "restore_point": point["name"], "restore_point_lsn": point["lsn"],
               "restore_point_time": point["time"], "wal_segment": point["wal_segment"]}
    rollback = {"name": "Roll back through the restore role", "ansible.builtin.include_role": {"name": "payments.deploy.restore", "tasks_from": "pgbackrest"},
                "vars": {"restore_pgbackrest": journal, "restore_reconcile_host": "localhost", "restore_reconcile_release_dir": str(cluster.base),
                         "restore_reconcile_env_file": str(cluster.base / "payments.env"), "restore_runtime_bin_dir": str(cluster.base / "bin")}}
    rc, report, output = run_playbook(collections_dir, cluster.base, play([rollback], variables), "--check")
    assert rc == 0, output[-3000:]
    checked = named(report, "Restore the cluster to the restore point and swap it in")
    assert checked["changed"] is True and checked["swapped"] is False and checked["wal_segment"] == point["wal_segment"]
    assert point["name"] in named(report, "Say what a real run would restore")["msg"]
    assert cluster.sql("SELECT count(*) FROM payments WHERE id = 900003") == [["1"]]

    restore = {"name": "Roll back", "ansible.builtin.include_role": {"name": "payments.deploy.pgbackrest", "tasks_from": "restore"}}
    rc, report, output = run_playbook(collections_dir, cluster.base, play([restore], variables), "-vvv")
    assert rc == 0, output[-3000:]
    assert cipher_pass not in output
    result = named(report, "Restore the cluster to the restore point and swap it in")
    assert result["swapped"] is True and result["downtime_seconds"] > 0
    assert cluster.sql("SELECT count(*) FROM payments WHERE id = 900003") == [["0"]]
    assert cluster.sql("SELECT count(*) FROM payments") == [["20000"]]
    assert "check archiving of the swapped-in cluster" in [c["purpose"] for c in result["commands"]]
    # the role again: done already, nothing changes
    rc, report, output = run_playbook(collections_dir, cluster.base, play([restore], variables))
    assert rc == 0 and report["stats"]["localhost"]["changed"] == 0, [(n, r.get("changed"), r.get("msg")) for n, r in task_results(report).items()]


def test_an_unknown_strategy_is_refused_before_anything_runs(world: tuple[Cluster, Repo], stanza_run: dict[str, t.Any],
                                                             collections_dir: Path) -> None:
    cluster, repo = world
    before = repo.backups()
    archived = cluster.sql("SELECT archived_count FROM pg_stat_archiver")
    rc, report, output = run_playbook(collections_dir, repo.base, play([deploy_task("x-1", strategy="snapshot")], {}))
    assert rc != 0
    failed = task_results(report)
    assert any("backup_strategy" in str(result.get("msg", "")) and "snapshot" in str(result.get("msg", "")) for result in failed.values()), output[-2000:]
    assert repo.backups() == before
    assert cluster.sql("SELECT archived_count FROM pg_stat_archiver") == archived, "no restore point, no WAL switch"
    assert stanza_run["stanza_created"] is True
