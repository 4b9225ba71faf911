"""labctl is idempotent and describes every endpoint without printing a secret."""
from __future__ import annotations

import json
import subprocess

from conftest import REPO
from helpers import live, map_colour

LABCTL = str(REPO / "lab" / "labctl")


def test_up_again_keeps_state_and_status_lists_every_endpoint(lab):
    colour, versions = map_colour(lab["haproxy_map_file"]), live(lab["production_url"])[0]
    again = subprocess.run([LABCTL, "up"], capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0, again.stderr
    assert map_colour(lab["haproxy_map_file"]) == colour
    assert live(lab["production_url"])[0] == versions
    status = subprocess.run([LABCTL, "status", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(status.stdout)
    for key in ("production_url", "staging_url", "postgres_dsn", "redis_url", "s3_endpoint", "haproxy_admin_socket"):
        assert info[key], key
    assert info["running"] is True
    for name, value in lab["secrets"].items():
        assert value not in status.stdout + again.stdout + again.stderr, f"labctl printed the secret {name}"
