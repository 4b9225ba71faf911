# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by the modules that talk to the HAProxy runtime API."""

    DOCUMENTATION = r"""
options:
  admin_socket:
    description:
      - Path of the HAProxy admin socket on the target host, as set by C(stats socket ... level admin) in the C(global) section.
      - The modules send one runtime API command per connection and read the answer to its end.
    type: path
    required: true
  map_file:
    description:
      - The map file that routes traffic, spelled exactly as HAProxy knows it (the path given to the C(map) converter in the configuration).
      - It is the map's identifier in the runtime API and the file on disk that a reload reads, so use an absolute path.
    type: path
    required: true
  backend_template:
    description:
      - The backend that a colour routes to, from C({colour}) (required) and C({key}).
      - Only these two plain fields are allowed; attributes, indexes, conversions and format specs (C({key.x}),
        C({key[0]}), C({key!r}), C({key:>9})) fail before the admin socket is opened.
      - With the default, key C(production) and colour C(green) route to backend C(production_green).
    type: str
    default: "{key}_{colour}"
  socket_timeout:
    description:
      - Seconds to wait for the admin socket to accept a command and answer it.
      - A finite number above V(0), at most V(300); anything else fails before the socket is opened.
    type: float
    default: 5.0
notes:
  - The modules need only the Python standard library on the target host.
  - Map keys and colours must be plain words (letters, digits, C(_), C(.), C(:), C(-)) so they cannot change the runtime API command.
    So must the value HAProxy serves for the key, since a failed switch sends it back; the modules refuse to change
    anything when it is not.
attributes:
  action_group:
    description: Use C(group/payments.deploy.haproxy) in C(module_defaults) to set its options once for every module of the group.
    support: full
    membership:
      - payments.deploy.haproxy
"""
