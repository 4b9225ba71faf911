"""The monitoring role's alert_check against a real Alertmanager and webhook receiver: a synthetic alert that reaches
the receiver passes and says how long it took; one that Alertmanager routes nowhere fails within the timeout; without
a read-back URL, Alertmanager's acceptance is checked and delivery is reported as not confirmed."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

from conftest import AlertPath, run_alert_check


def received(alert_path: AlertPath) -> list[dict]:
    with urllib.request.urlopen(f"{alert_path.receiver_url}/alerts?alertname=PaymentsDeployAlertCheck") as answer:
        return json.load(answer)["notifications"]


def check_ids(text: str) -> list[str]:
    return re.findall(r"synthetic alert (\S+)\s+reached\s+the\s+receiver\s+in\s+[0-9.]+ s", text)


def test_alert_reaching_the_receiver_passes(alert_path, tmp_path):
    done = run_alert_check(tmp_path, monitoring_environment="production",
                           monitoring_alertmanager_url=alert_path.alertmanager_url,
                           monitoring_alert_check_receiver_url=f"{alert_path.receiver_url}/alerts",
                           monitoring_alert_check_labels={"team": "payments"})
    assert done.returncode == 0, done.stdout + done.stderr
    [check_id] = check_ids(done.stdout)
    alerts = [alert for note in received(alert_path) for alert in note["notification"]["alerts"]]
    [alert] = [alert for alert in alerts if alert["labels"].get("check_id") == check_id]
    assert alert["labels"] | {"check_id": ""} == {"alertname": "PaymentsDeployAlertCheck", "environment": "production",
                                                  "severity": "info", "synthetic": "true", "team": "payments",
                                                  "check_id": ""}
    # It resolves by itself: Alertmanager holds it with an end a minute or so after the check's time.
    query = urllib.parse.quote(f'check_id="{check_id}"')
    with urllib.request.urlopen(f"{alert_path.alertmanager_url}/api/v2/alerts?filter={query}") as answer:
        [held] = json.load(answer)
    assert held["endsAt"] > held["startsAt"]


def test_alert_routed_nowhere_fails_within_the_timeout(alert_path, tmp_path):
    done = run_alert_check(tmp_path, monitoring_environment="staging",
                           monitoring_alertmanager_url=alert_path.alertmanager_url,
                           monitoring_alert_check_receiver_url=f"{alert_path.receiver_url}/alerts",
                           monitoring_alert_check_timeout=3)
    assert done.returncode != 0
    assert "Wait for the synthetic alert at the receiver" in done.stdout
    assert not any(alert["labels"]["environment"] == "staging"
                   for note in received(alert_path) for alert in note["notification"]["alerts"])


def test_without_read_back_only_acceptance_is_checked(alert_path, tmp_path):
    done = run_alert_check(tmp_path, monitoring_environment="staging",
                           monitoring_alertmanager_url=alert_path.alertmanager_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivery to the receiver was not confirmed" in " ".join(done.stdout.split())


def test_unreachable_alertmanager_fails(alert_path, tmp_path):
    done = run_alert_check(tmp_path, monitoring_alertmanager_url="http://127.0.0.1:9/",
                           monitoring_alert_check_receiver_url=f"{alert_path.receiver_url}/alerts")
    assert done.returncode != 0
    assert "Send a synthetic alert to Alertmanager" in done.stdout
