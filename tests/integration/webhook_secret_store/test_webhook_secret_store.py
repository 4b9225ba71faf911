"""The stripe_webhooks role's secret stores through ansible-playbook, against the Stripe emulator and a moto server:
the signing secret Stripe issues lands in the store and in an app host's env file in the same run, in no controller
file and in no output; a re-run reads it back and creates nothing; bad input stops before anything changes."""

from __future__ import annotations

import stat
from pathlib import Path

from ansible.parsing.vault import VaultLib, VaultSecret

from conftest import MARKER, URL, World, stored_in_aws


def assert_kept_nowhere_else(world: World, secret: str, output: str) -> None:
    assert secret.startswith("whsec_") and len(secret) > 20
    assert secret not in output
    assert world.env_secret() == secret
    assert world.controller_files_holding(secret) == []


def test_host_file_keeps_the_secret_on_the_load_balancer_and_a_rerun_reads_it_back(world: World) -> None:
    first = world.playbook()
    assert first.returncode == 0, first.output[-4000:]
    (endpoint,) = world.stripe.endpoints()
    assert endpoint["metadata"]["payments_deploy_id"] == MARKER and endpoint["url"] == URL
    secret = world.host_file.read_text()
    assert stat.S_IMODE(world.host_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(world.host_file.parent.stat().st_mode) == 0o700
    assert_kept_nowhere_else(world, secret, first.output)

    world.env_file.unlink()  # a new app host, or a new colour: its env file comes from the store
    again = world.playbook()
    assert again.returncode == 0, again.output[-4000:]
    assert [e["id"] for e in world.stripe.endpoints()] == [endpoint["id"]]
    assert world.host_file.read_text() == secret
    assert_kept_nowhere_else(world, secret, again.output)
    assert again.changed == 1  # the env file only: nothing in Stripe, nothing in the store


def test_aws_secretsmanager_keeps_the_secret_in_moto(world: World) -> None:
    world.settings = {"stripe_webhooks_secret_store": "aws_secretsmanager", "stripe_webhooks_secret_aws_region": "us-east-1",
                      "stripe_webhooks_secret_aws_endpoint_url": world.moto.endpoint,
                      "stripe_webhooks_secret_aws_access_key": "test", "stripe_webhooks_secret_aws_secret_key": "test"}
    first = world.playbook()
    assert first.returncode == 0, first.output[-4000:]
    secret = stored_in_aws(world)
    assert secret is not None
    assert_kept_nowhere_else(world, secret, first.output)
    assert not world.host_file.exists()

    again = world.playbook()
    assert again.returncode == 0, again.output[-4000:]
    assert len(world.stripe.endpoints()) == 1 and stored_in_aws(world) == secret
    assert_kept_nowhere_else(world, secret, again.output)
    assert again.changed == 0


def test_vault_file_keeps_the_secret_encrypted(world: World, tmp_path: Path) -> None:
    durable = tmp_path / "durable"  # stands for a mounted share or a repository: not the controller's own disk
    durable.mkdir()
    password = durable / "vault-password"
    password.write_text("correct horse battery staple\n")
    vault_file = durable / "stripe-webhook-secret-production.vault"
    world.settings = {"stripe_webhooks_secret_store": "vault_file", "stripe_webhooks_secret_vault_file": str(vault_file),
                      "stripe_webhooks_secret_vault_password_file": str(password)}
    first = world.playbook()
    assert first.returncode == 0, first.output[-4000:]
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;1.")
    secret = VaultLib([("default", VaultSecret(b"correct horse battery staple"))]).decrypt(vault_file.read_text()).decode()
    assert_kept_nowhere_else(world, secret, first.output)
    assert secret.encode() not in vault_file.read_bytes()

    again = world.playbook()
    assert again.returncode == 0, again.output[-4000:]
    assert len(world.stripe.endpoints()) == 1
    assert_kept_nowhere_else(world, secret, again.output)


def test_an_unreachable_store_stops_the_run_before_any_endpoint_is_created(world: World) -> None:
    world.settings = {"stripe_webhooks_secret_store": "aws_secretsmanager", "stripe_webhooks_secret_aws_region": "us-east-1",
                      "stripe_webhooks_secret_aws_endpoint_url": "http://127.0.0.1:9",  # nothing listens on discard
                      "stripe_webhooks_secret_aws_access_key": "test", "stripe_webhooks_secret_aws_secret_key": "test"}
    run = world.playbook()
    assert run.returncode != 0
    assert "The webhook secret store aws_secretsmanager" in run.output and "cannot be used" in run.output
    assert "Nothing was changed in Stripe" in run.output
    assert world.stripe.endpoints() == []


def test_an_unknown_store_is_refused_before_anything_changes(world: World) -> None:
    world.settings = {"stripe_webhooks_secret_store": "s3_bucket"}
    run = world.playbook()
    assert run.returncode != 0
    assert "stripe_webhooks_secret_store" in run.output and "s3_bucket" in run.output
    assert world.stripe.endpoints() == []
    assert not (world.root("lb1") / "var").exists()


def test_an_existing_endpoint_whose_secret_was_never_kept_stops_the_run(world: World) -> None:
    existing = world.stripe.create_endpoint(URL, MARKER)
    run = world.playbook()
    assert run.returncode != 0
    assert f"Webhook endpoint {existing['id']} exists but the secret store" in run.output
    assert "Nothing was changed" in run.output
    (endpoint,) = world.stripe.endpoints()
    assert endpoint["id"] == existing["id"] and endpoint["enabled_events"] == ["payment_intent.succeeded"]
    assert not world.host_file.exists() and existing["secret"] not in run.output


def test_the_file_of_the_earlier_behaviour_fills_an_empty_store_once(world: World) -> None:
    existing = world.stripe.create_endpoint(URL, MARKER)
    old_file = world.controller / "webhook-secret-production"
    world.controller.mkdir()
    old_file.write_text(existing["secret"])
    world.settings = {"payments_webhook_secret_files": {"production": str(old_file)}}
    run = world.playbook()
    assert run.returncode == 0, run.output[-4000:]
    assert world.host_file.read_text() == existing["secret"] == world.env_secret()
    assert existing["secret"] not in run.output
    assert old_file.read_text() == existing["secret"]  # only read
    assert [e["id"] for e in world.stripe.endpoints()] == [existing["id"]]
