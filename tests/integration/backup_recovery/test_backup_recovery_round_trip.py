"""A real pg_backup backup recovered by the standalone script, without the collection, then restored with pg_restore:
the new database holds exactly the backed-up rows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pg_backup_helpers import table_contents
from pg_backup_servers import PostgresCluster
from recovery_runner import (REFUSED_PACKAGES, SCRIPT, Backup, documented_row_counts, imported_modules, manifest_row_counts, operator_env,
                             recover, recover_command, restore_archive)


def row_counts(contents: dict[str, object]) -> dict[str, int]:
    return {name: value["rows"] for name, value in contents.items() if isinstance(value, dict) and "rows" in value}


def test_recovered_archive_restores_identical_data_without_the_collection(
        cluster: PostgresCluster, source_db: str, backup: Backup, key: str, workdir: Path) -> None:
    source = table_contents(cluster, source_db)
    manifest = backup.manifest()
    output = workdir / "out" / "recovered.dump"
    output.parent.mkdir()
    proc = recover(workdir, "--object", str(backup.object_path), "--manifest", str(backup.manifest_path), "--output", str(output),
                   env={"ENCRYPTION_KEY": key}, importtime=True)
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr[-3000:]
    modules = imported_modules(stderr)
    assert "cryptography.hazmat.primitives.ciphers.aead" in modules and "zstandard" in modules, "importtime lists what was imported"
    assert not [m for m in modules if m.split(".")[0] in REFUSED_PACKAGES], "the script imported the collection or Ansible"
    assert sorted(p.name for p in output.parent.iterdir()) == ["recovered.dump"], "no temporary file left"
    assert output.stat().st_size == manifest["sizes"]["dump_bytes"]
    assert output.stat().st_mode & 0o077 == 0, "the plaintext archive is private to its owner"

    restored = source_db + "_recovered"
    result = restore_archive(cluster, output, restored)
    assert result.returncode == 0, result.stderr.decode()
    recovered = table_contents(cluster, restored)
    assert recovered == source
    assert row_counts(recovered) == manifest["row_counts"]
    assert documented_row_counts(cluster, restored) == manifest_row_counts(backup.manifest_path), "the documented row-count check agrees"
    cluster.execute(f'DROP DATABASE "{restored}"')


def test_stdout_streams_into_pg_restore_with_the_key_in_a_file(
        cluster: PostgresCluster, source_db: str, backup: Backup, key: str, workdir: Path) -> None:
    key_file = workdir / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    restored = source_db + "_piped"
    recover_proc = subprocess.Popen(  # pylint: disable=consider-using-with
        recover_command("--object", str(backup.object_path), "--manifest", str(backup.manifest_path), "--output", "-",
                        "--key-file", str(key_file)),
        cwd=workdir, env=operator_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = restore_archive(cluster, None, restored, stdin=recover_proc.stdout)
    recover_proc.stdout.close()
    recover_stderr = recover_proc.stderr.read().decode()
    recover_proc.stderr.close()
    assert recover_proc.wait(timeout=60) == 0, recover_stderr
    assert result.returncode == 0, result.stderr.decode()
    assert table_contents(cluster, restored) == table_contents(cluster, source_db)
    cluster.execute(f'DROP DATABASE "{restored}"')


def test_import_guard_refuses_the_collection(workdir: Path) -> None:
    """The guard the recovery runs under really stops an import of Ansible (which the test environment has)."""
    script = workdir / "imports_ansible.py"
    script.write_text("import ansible\nprint('imported')\n")
    proc = subprocess.run(recover_command(script=script), cwd=workdir, env=operator_env(), capture_output=True, check=False, timeout=60)
    assert proc.returncode != 0 and b"import of ansible refused" in proc.stderr
    assert SCRIPT.exists()


def test_check_only_reads_everything_and_writes_nothing(backup: Backup, key: str, workdir: Path) -> None:
    proc = recover(workdir, "--object", str(backup.object_path), "--manifest", str(backup.manifest_path), env={"ENCRYPTION_KEY": key})
    assert proc.returncode == 0, proc.stderr.decode()
    assert "check only" in proc.stderr.decode()
    assert not list(workdir.iterdir())


def test_zstd_program_replaces_the_zstandard_package(backup: Backup, key: str, workdir: Path) -> None:
    """Without the zstandard package (refused by the guard) the script decompresses with Debian's zstd program, and says
    so when that is missing too."""
    if shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed (Debian package zstd)")
    with_package = workdir / "with-package.dump"
    with_program = workdir / "with-program.dump"
    common = ("--object", str(backup.object_path), "--manifest", str(backup.manifest_path))
    first = recover(workdir, *common, "--output", str(with_package), env={"ENCRYPTION_KEY": key})
    refused = (*REFUSED_PACKAGES, "zstandard")
    second = recover(workdir, *common, "--output", str(with_program), env={"ENCRYPTION_KEY": key}, refused=refused)
    assert first.returncode == 0 and second.returncode == 0, second.stderr.decode()[-2000:]
    assert with_program.read_bytes() == with_package.read_bytes()
    neither = recover(workdir, *common, "--output", str(workdir / "neither.dump"), env={"ENCRYPTION_KEY": key, "PATH": str(workdir)},
                      refused=refused)
    assert neither.returncode == 8 and "nor the 'zstd' program" in neither.stderr.decode()
    assert not (workdir / "neither.dump").exists()
