"""The role's `tree` entry point on an installed release: a clean tree passes, a secret value or a key-shaped string in
a file stops the run before anything changes and is named by file, line and kind, never shown; a check run whose
release is not installed yet says so."""

from __future__ import annotations

from pathlib import Path

from conftest import AuditWorld


def release(world: AuditWorld, files: dict[str, str]) -> Path:
    tree = world.base / "opt" / "payments" / "releases" / "1.1.0"
    for name, text in {"payment_service/__init__.py": "", "payment_service/settings.py":
                       'import os\n\nSTRIPE_KEY = os.environ["STRIPE_SECRET_KEY"]\nLIVE = STRIPE_KEY.startswith("sk_live_")\n',
                       **files}.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text, encoding="utf-8")
    return tree


def test_a_clean_release_passes(world: AuditWorld) -> None:
    tree = release(world, {})
    run = world.run("tree", release_audit_release_dir=str(tree))
    assert run.rc == 0, run.failure()
    scan = run.result_of("Scan the installed release for secret values and keys")
    assert scan["passed"] is True and scan["files"] == 2 and scan["findings"] == []
    assert world.marker.exists()


def test_secrets_in_the_release_stop_the_run_and_are_never_shown(world: AuditWorld) -> None:
    salt, key = world.env["HASH_SALT"], "sk_live_" + "A1b2C3d4E5f6G7h8J9k0"
    tree = release(world, {"payment_service/hashing.py": f'SALT = "{salt}"\n',
                           "deploy/old.env": f"\nSTRIPE_SECRET_KEY={key}\n"})
    run = world.run("tree", verbosity=3, json_report=False, release_audit_release_dir=str(tree))
    assert run.rc != 0
    said = " ".join(run.stdout.split())
    assert "payment_service/hashing.py line 1: HASH_SALT" in said
    assert "deploy/old.env line 2:" in said and "Secrets belong in the environment" in said
    for piece in [*world.secret_pieces(), key]:
        assert piece not in run.stdout + run.stderr
    assert not world.marker.exists()


def test_a_check_run_without_the_installed_release_says_so(world: AuditWorld) -> None:
    missing = world.base / "opt" / "payments" / "releases" / "9.9.9"
    run = world.run("tree", check=True, release_audit_release_dir=str(missing))
    assert run.rc == 0, run.failure()
    said = run.result_of("Say that check mode has no installed release to scan")["msg"]
    assert said == f"Check mode: {missing} is not installed yet; a real run scans it once it is."
