# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The stanza, configuration and cluster options every pgbackrest_* module shares."""

    DOCUMENTATION = r"""
options:
  stanza:
    description: Name of the stanza (a section of O(config) naming C(pg1-path) and the connection).
    type: str
    required: true
  config:
    description: The pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  config_include_path:
    description: A directory of further configuration files (the one holding the secrets); pgBackRest's default when omitted.
    type: path
  cipher_pass:
    description: Passphrase of the repository's encryption; taken from the configuration when omitted. Never logged or returned.
    type: str
  os_user:
    description: The cluster's OS user; every command runs as it.
    type: str
    default: postgres
  pg_port:
    description: Port of the (live) cluster, the same as C(pg1-port).
    type: int
    default: 5432
  pg_socket_path:
    description: Directory of the cluster's Unix socket, the same as C(pg1-socket-path).
    type: path
    default: /var/run/postgresql
  pg_bin_dir:
    description: Directory of the PostgreSQL client programs (C(psql); C(pg_ctl) and C(pg_waldump) for a restore).
    type: path
    default: /usr/lib/postgresql/15/bin
  pgbackrest_bin:
    description: The C(pgbackrest) executable.
    type: path
    default: /usr/bin/pgbackrest
  command_timeout:
    description: Seconds any one command may take.
    type: int
    default: 3600
"""
