"""No secret in the output of any Stripe module at -vvvv: API keys, webhook signing secrets, service credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stripe_lab import KEYS, StripeEmulator, ansible
from host_python import HOST_PYTHON

SERVICE_TOKEN = "svc-token-7c1f0a9e4b2d4e6f"


def assert_clean(output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in output, f"a secret ({secret[:8]}...) is in the output"


def test_webhook_endpoint_secrets_stay_hidden(emulator: StripeEmulator, collections_dir: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    args = {"api_base": emulator.url, "url": "https://pay.example.com/hook", "enabled_events": ["charge.refunded"], "marker": "m",
            "secret_file": str(secret_file)}
    env = {"STRIPE_SECRET_KEY": KEYS["test"]}
    created = ansible(collections_dir, "stripe_webhook_endpoint", args, "-vvvv", "--diff", env=env, json_output=False)
    assert created.returncode == 0, created.output
    first_secret = secret_file.read_text()
    recreated = ansible(collections_dir, "stripe_webhook_endpoint", dict(args, api_version="2024-06-20", recreate=True),
                        "-vvvv", "--diff", env=env, json_output=False)
    assert recreated.returncode == 0, recreated.output
    second_secret = secret_file.read_text()
    assert second_secret != first_secret
    info = ansible(collections_dir, "stripe_webhook_endpoint_info", {"api_base": emulator.url}, "-vvvv", env=env, json_output=False)
    assert info.returncode == 0 and "pay.example.com" in info.output
    for run in (created, recreated, info):
        assert_clean(run.output, KEYS["test"], first_secret, second_secret)


def test_key_info_failure_shows_only_the_hint(emulator: StripeEmulator, collections_dir: Path) -> None:
    run = ansible(collections_dir, "stripe_key_info", {"api_base": emulator.url, "expect_mode": "live"}, "-vvvv",
                  env={"STRIPE_SECRET_KEY": KEYS["test"]}, json_output=False)
    assert run.returncode != 0 and "sk_test_\u2026efgh" in run.output
    assert_clean(run.output, KEYS["test"])


def test_probe_failure_hides_key_and_service_credentials(emulator: StripeEmulator, collections_dir: Path) -> None:
    args = {"api_base": emulator.url, "run_id": "secrets-1",
            "service_check": {"url": emulator.url + "/no-such-service/{id}", "retries": 0, "headers": {"Authorization": f"Bearer {SERVICE_TOKEN}"}}}
    run = ansible(collections_dir, "payment_probe", args, "-vvvv", env={"STRIPE_SECRET_KEY": KEYS["test"]}, json_output=False)
    assert run.returncode != 0 and "the service does not know PaymentIntent" in run.output
    assert_clean(run.output, KEYS["test"], SERVICE_TOKEN)


def test_key_given_as_a_module_option_in_a_playbook(emulator: StripeEmulator, collections_dir: Path, tmp_path: Path) -> None:
    playbook = tmp_path / "probe.yml"
    playbook.write_text(f"""
- name: Probe with the key as an option
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Live key where a test key is expected
      payments.deploy.stripe_key_info:
        api_key: "{{{{ stripe_key }}}}"
        api_base: {emulator.url}
        expect_mode: test
""")
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(f"stripe_key: {KEYS['live']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "STRIPE_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local", "-vvvv",
                           "-e", f"ansible_python_interpreter={HOST_PYTHON}", "-e", f"@{vars_file}", str(playbook)],
                          capture_output=True, text=True, env=env, cwd=collections_dir, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "expected a test key: STRIPE_SECRET_KEY is a live key (sk_live_\u2026abcd)" in output
    assert_clean(output, KEYS["live"])
