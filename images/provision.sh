#!/bin/sh
# Turns a fresh Debian 12 (or Amazon Linux 2023) host into an anyguard
# gateway image, and nothing else: installs the static binary, the systemd
# unit and the first-boot script, creates the service user and the
# directories, sets the sysctls a tun gateway needs, and makes sure the AWS
# CLI (which the first-boot script uses) is there. The gateway itself is
# configured and started on first boot (images/cloud-init/user-data.yaml).
#
#   provision.sh DIR
#
# DIR holds anyguard (CGO_ENABLED=0, `make build`), anyguard.service and
# anyguard-bootstrap, as the Packer template uploads them. Run as root, on
# the host or in a chroot (the boot test in e2e/ami_test.go applies it to
# a Debian 12 root file system exactly so). Running it twice is harmless.
set -eu

src=${1:?usage: provision.sh DIR}
for f in anyguard anyguard.service anyguard-bootstrap; do
	if [ ! -f "$src/$f" ]; then
		echo "provision.sh: $src/$f is missing" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "provision.sh: must run as root" >&2
	exit 1
fi

# The AWS CLI fetches the shared keys on first boot. Amazon Linux 2023 ships
# it; Debian's cloud images do not.
if ! command -v aws >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1; then
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends awscli curl ca-certificates
	elif command -v dnf >/dev/null 2>&1; then
		dnf install -y awscli-2 curl
	else
		echo "provision.sh: no apt-get or dnf to install the AWS CLI with" >&2
		exit 1
	fi
fi

install -o root -g root -m 0755 "$src/anyguard" /usr/local/bin/anyguard
install -o root -g root -m 0755 "$src/anyguard-bootstrap" /usr/local/sbin/anyguard-bootstrap
install -o root -g root -m 0644 "$src/anyguard.service" /etc/systemd/system/anyguard.service

# A system user with no shell and no home; the unit gives it CAP_NET_ADMIN.
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
if ! getent group anyguard >/dev/null; then
	groupadd --system anyguard
fi
if ! getent passwd anyguard >/dev/null; then
	useradd --system --gid anyguard --no-create-home --home-dir /nonexistent --shell "$nologin" anyguard
fi

# /etc/anyguard: the configuration and the peers file (root's, readable by
# the gateway's group). /etc/anyguard/keys: the gateway's alone (0700,
# files 0600), as it wants its key files.
install -d -o root -g anyguard -m 0750 /etc/anyguard
install -d -o anyguard -g anyguard -m 0700 /etc/anyguard/keys

# ip_forward: the tun egress forwards clients' packets to the private
# networks and back. rp_filter loose (2), not strict: traffic of other
# regions' clients comes back over the backbone, through the TUN, while the
# route to their addresses may point elsewhere.
cat >/etc/sysctl.d/60-anyguard.conf <<'SYSCTL'
# anyguard gateway (images/provision.sh)
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
net.ipv4.conf.all.rp_filter = 2
net.ipv4.conf.default.rp_filter = 2
SYSCTL
chmod 0644 /etc/sysctl.d/60-anyguard.conf
# Apply now only on a running host, not in a chroot or an image build.
if [ -d /run/systemd/system ] && [ "$(stat -c %d:%i / 2>/dev/null)" = "$(stat -c %d:%i /proc/1/root/. 2>/dev/null)" ]; then
	sysctl -q -p /etc/sysctl.d/60-anyguard.conf
fi

# Enabled, but it starts only once anyguard.yaml exists
# (ConditionPathExists=): first boot writes it and starts the unit.
systemctl enable anyguard.service
