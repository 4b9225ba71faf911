# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which result fields of the collection's modules a run report keeps, and how a dotted field is read."""

from __future__ import annotations

COLLECTION = "payments.deploy."

# The evidence each module's result carries; a module not listed keeps its top-level scalars.
SELECTED_FIELDS = {
    "pg_backup": ["backup_id", "sha256", "locations", "verified", "sizes"],
    "db_migrate": ["heads", "applied.name", "schema_changed", "contract_applied", "target", "failed_change"],
    "haproxy_switch": ["colour", "previous_colour", "switched_at", "persisted", "elapsed"],
    "rollback_switch": ["colour_from", "colour_to", "release_from", "release_to", "switched_at", "already_rolled_back",
                        "problems"],
    "smoke_test": ["run_id", "failed_checks", "latency", "duration", "targets.version"],
    "payment_probe": ["run_id", "latency", "charged_total", "refunded_total", "fresh_probes", "elapsed"],
    "frontend_sample_info": ["versions", "colours", "hosts", "statuses", "missing_hosts", "requests_sent", "duration"],
    "release_analysis": ["mode", "phase", "message", "stopped_early", "started_at", "duration", "metrics.name",
                         "metrics.phase"],
    "tls_certificate_info": ["subject", "not_after", "days_remaining", "verified", "protocol", "failures"],
    "stripe_key_info": ["kind", "mode", "livemode", "key_valid", "account", "problems"],
    "staging_evidence_info": ["evidence", "age_days"],
    "deploy_lock": ["acquired", "renewed", "released", "expires_at"],
}
# Never kept from any result, whatever a map asks for.
NEVER_KEPT = ("invocation", "token", "diff", "stdout", "stdout_lines", "stderr", "stderr_lines", "content")
MISSING = object()


def short_name(action: str) -> str | None:
    """The module's name inside the collection, or None for another collection's action."""
    return action[len(COLLECTION):] if action.startswith(COLLECTION) else None


def dotted(value, path: str):
    """The value at PATH (a.b.c) in VALUE; a list on the way maps the rest of the path over its items
    (a number picks one item). MISSING when nothing is there."""
    for index, part in enumerate(path.split(".")):
        if isinstance(value, list):
            if part.isdigit():
                value = value[int(part)] if int(part) < len(value) else MISSING
            else:
                rest = ".".join(path.split(".")[index:])
                found = [dotted(item, rest) for item in value]
                return [item for item in found if item is not MISSING]
        elif isinstance(value, dict):
            value = value.get(part, MISSING)
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def select(result: dict, action: str, wanted: set[str]) -> dict:
    """The fields of RESULT kept in the report: the module's selection, scalars of other collection modules, and the
    fields a checklist map's evidence asks for (WANTED)."""
    fields = set(wanted)
    name = short_name(action)
    if name in SELECTED_FIELDS:
        fields.update(SELECTED_FIELDS[name])
    elif name is not None:
        fields.update(key for key, value in result.items()
                      if not key.startswith("_") and key not in ("changed", "failed", "msg", "skipped")
                      and (value is None or isinstance(value, (str, int, float, bool))))
    kept = {}
    for field in sorted(fields):
        if field.split(".")[0] in NEVER_KEPT:
            continue
        value = dotted(result, field)
        if value is not MISSING:
            kept[field] = value
    return kept
