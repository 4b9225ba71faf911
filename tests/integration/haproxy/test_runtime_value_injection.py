"""A map value HAProxy serves is sent back to it only when it is a plain word: a value holding ``;`` would be a
second runtime API command (HAProxy splits commands on ``;``). Against a real HAProxy, through the ``ansible`` CLI."""

from __future__ import annotations

from pathlib import Path

from real_haproxy import HAProxyLab, runtime_command
from test_haproxy_switch_real import ansible, switch_args

INJECTED = "blue; disable server production_blue/app1"


def test_switch_refuses_an_unsafe_value_served_by_haproxy_and_sends_nothing(haproxy_lab: HAProxyLab,
                                                                            collections_dir: Path) -> None:
    lab = haproxy_lab
    # a map file line's value is the rest of the line: a reload makes HAProxy serve it as it is
    Path(lab.map_file).write_text(f"production {INJECTED}\nstaging green\n")
    lab.reload()
    lab.wait_until_up()
    assert INJECTED in runtime_command(lab.socket, f"show map {lab.map_file}")

    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"))
    assert result.get("failed") is True, result
    assert "refusing to switch production" in result["msg"] and "not a plain colour" in result["msg"]
    assert not [c for c in result["commands"] if c.startswith(("set ", "add ", "del "))]
    assert INJECTED in runtime_command(lab.socket, f"show map {lab.map_file}")
    assert lab.statuses()["production_blue/app1"] == "UP"  # the smuggled command never ran
