"""The lab's hosts as real SSH targets (labctl up --ssh).

One sshd per inventory host, each on its own loopback port with its own host key, all for one unprivileged `deploy`
user who may use sudo (become). The host keys are recorded in a known_hosts file, so that the SSH inventory
(inventories/lab-ssh) keeps host key checking on. sshd must start as root, so this needs a root lab.
"""
from __future__ import annotations

import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SSH_INVENTORY = REPO / "inventories" / "lab-ssh"
DEPLOY_USER = "deploy"
SUDOERS = Path("/etc/sudoers.d/payments-lab-deploy")
SSHD = Path("/usr/sbin/sshd")


def ssh_ports(inventory: Path = SSH_INVENTORY) -> dict[str, int]:
    """Each host's sshd port, from the SSH inventory (the lab's servers and the inventory cannot disagree)."""
    hosts = yaml.safe_load((inventory / "ssh.yml").read_text())["all"]["hosts"]
    return {name: int(hostvars["ansible_port"]) for name, hostvars in hosts.items()}


def enabled(state: Path) -> bool:
    """`up --ssh` once: the lab keeps its SSH hosts on every later `up` until `down --purge`."""
    return (state / "ssh" / "enabled").exists()


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def ensure_deploy_user() -> pwd.struct_passwd:
    """The unprivileged user the SSH inventory connects as; it may become root with sudo, and nothing else."""
    try:
        user = pwd.getpwnam(DEPLOY_USER)
    except KeyError:
        run("useradd", "--create-home", "--shell", "/bin/bash", DEPLOY_USER)
        user = pwd.getpwnam(DEPLOY_USER)
    # A new account's password is locked ("!"), and sshd without PAM refuses locked accounts: "*" means no password
    # can match, the key is the only way in.
    run("usermod", "--password", "*", DEPLOY_USER)
    rule = f"# Written by labctl: the lab's deploy user becomes root for the collection's playbooks.\n" \
           f"{DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    if not SUDOERS.exists() or SUDOERS.read_text() != rule:
        with tempfile.NamedTemporaryFile("w", dir=SUDOERS.parent, delete=False) as draft:
            draft.write(rule)
        Path(draft.name).chmod(0o440)
        run("visudo", "-c", "-q", "-f", draft.name)  # a broken sudoers file would lock sudo for everyone
        Path(draft.name).replace(SUDOERS)
    return user


def ensure_client_key(state: Path, user: pwd.struct_passwd) -> Path:
    """The controller's key pair (in the lab state) and the deploy user's authorized_keys."""
    key = state / "ssh" / "id_ed25519"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "payments-lab-controller", "-f", str(key))
    dot_ssh = Path(user.pw_dir) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    authorized = dot_ssh / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    for path, mode in ((dot_ssh, 0o700), (authorized, 0o600)):
        path.chmod(mode)
        shutil.chown(path, user.pw_uid, user.pw_gid)
    return key


def sshd_config(host_dir: Path, port: int) -> str:
    return f"""# Written by labctl: the SSH daemon of one lab host.
Port {port}
ListenAddress 127.0.0.1
HostKey {host_dir / 'ssh_host_ed25519_key'}
PidFile {host_dir / 'sshd.pid'}
AllowUsers {DEPLOY_USER}
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
# Ansible runs up to `forks` connections at once, each multiplexing sessions over one master.
MaxStartups 64:30:128
MaxSessions 64
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def ensure_host(state: Path, host: str, port: int) -> Path:
    """A host's key and sshd configuration (checked with `sshd -t`)."""
    host_dir = state / "ssh" / "hosts" / host
    host_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = host_dir / "ssh_host_ed25519_key"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{host}.payments.lab", "-f", str(key))
    config = host_dir / "sshd_config"
    config.write_text(sshd_config(host_dir, port))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    run(str(SSHD), "-t", "-f", str(config))
    return config


def write_known_hosts(state: Path, ports: dict[str, int]) -> Path:
    """`[127.0.0.1]:PORT KEY` per host: with StrictHostKeyChecking=yes a host that shows another key is refused."""
    lines = []
    for host, port in sorted(ports.items()):
        public = (state / "ssh" / "hosts" / host / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"[127.0.0.1]:{port} {public[0]} {public[1]}")
    path = state / "ssh" / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(state: Path) -> dict[str, Path]:
    """Everything the SSH hosts need before their daemons start; returns each host's sshd configuration."""
    if not SSHD.exists() or not shutil.which("sudo"):
        raise SystemExit("labctl: --ssh needs Debian's openssh-server and sudo (make system-packages installs them)")
    (state / "ssh").mkdir(mode=0o700, exist_ok=True)
    user = ensure_deploy_user()
    ensure_client_key(state, user)
    ports = ssh_ports()
    configs = {host: ensure_host(state, host, port) for host, port in ports.items()}
    write_known_hosts(state, ports)
    (state / "ssh" / "enabled").touch()
    return configs


def programs(state: Path) -> dict[str, str]:
    """The supervisor programs of the SSH hosts (name -> command), when the lab has them."""
    if not enabled(state):
        return {}
    return {f"sshd-{host}": f"{SSHD} -D -e -f {state / 'ssh' / 'hosts' / host / 'sshd_config'}" for host in ssh_ports()}


def endpoints(state: Path) -> dict[str, str]:
    if not enabled(state):
        return {}
    return {"ssh_inventory": str(SSH_INVENTORY), "ssh_user": DEPLOY_USER,
            "ssh_private_key": str(state / "ssh" / "id_ed25519"), "ssh_known_hosts": str(state / "ssh" / "known_hosts")}
