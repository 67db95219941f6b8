#!/usr/bin/env bash
# Roll mesh-node's config and service definition out to several hosts over ssh, then restart.
#
# Usage: deploy/rollout.sh [--dry-run] [--mac-bin PATH] [--linux-bin PATH] HOSTS_FILE CONFIG_DIR
#
# HOSTS_FILE: one host per line, "<ssh-host> <macos|linux>"; blank lines and # comments are
# skipped. The ssh host may be user@name; set users and keys up in ~/.ssh/config.
# CONFIG_DIR: per host, the first of <host>.toml, <short-name>.toml (studio.local -> studio.toml)
# and mesh-node.toml (shared by all) is copied as the host's config.
# macOS: a launchd agent in the ssh user's GUI session (~/.mesh-node/config.toml).
# Linux: a systemd unit running as user mesh-node (/etc/mesh-node/config.toml), via sudo.
# mesh-node itself must already be installed at --mac-bin / --linux-bin on each host.
# --dry-run prints every command instead of running it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
# Single-quoted on purpose: $HOME is expanded on the remote host, not here.
# shellcheck disable=SC2016
MAC_BIN='$HOME/mesh-node/.venv/bin/mesh-node'
LINUX_BIN=/opt/mesh-node/.venv/bin/mesh-node
LABEL=com.mesh-node.agent
STAGE=.mesh-node-rollout  # remote staging folder, relative to the ssh user's home

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

die() {
    echo "rollout: $*" >&2
    exit 1
}

# Single-quote a word for display unless it is plainly safe.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:@=+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Run a command, or in --dry-run print it (one per line, prefixed "+ ", copy-pastable).
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+'
        local word
        for word in "$@"; do
            printf ' '
            quote "$word"
        done
        printf '\n'
    else
        "$@"
    fi
}

config_for() {
    local host=$1 name=${1#*@} short
    short=${name%%.*}
    for candidate in "$CONFIG_DIR/$name.toml" "$CONFIG_DIR/$short.toml" "$CONFIG_DIR/mesh-node.toml"; do
        if [[ -f $candidate ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    die "no config for $host in $CONFIG_DIR (tried $name.toml, $short.toml, mesh-node.toml)"
}

deploy_macos() {
    local host=$1 config=$2
    run ssh "$host" "mkdir -p ~/$STAGE ~/.mesh-node ~/Library/LaunchAgents ~/Library/Logs/mesh-node"
    run scp "$config" "$host:.mesh-node/config.toml"
    run scp "$HERE/launchd/$LABEL.plist" "$host:$STAGE/$LABEL.plist"
    run ssh "$host" "sed -e \"s|@MESH_NODE@|$MAC_BIN|g\" -e \"s|@CONFIG@|\$HOME/.mesh-node/config.toml|g\" -e \"s|@LOG_DIR@|\$HOME/Library/Logs/mesh-node|g\" ~/$STAGE/$LABEL.plist > ~/Library/LaunchAgents/$LABEL.plist"
    # bootout fails when the agent is not loaded yet: that is fine on a first install.
    run ssh "$host" "launchctl bootout gui/\$(id -u)/$LABEL 2>/dev/null || true; launchctl bootstrap gui/\$(id -u) ~/Library/LaunchAgents/$LABEL.plist"
}

deploy_linux() {
    local host=$1 config=$2
    run ssh "$host" "mkdir -p ~/$STAGE"
    run scp "$config" "$host:$STAGE/config.toml"
    run scp "$HERE/systemd/mesh-node.service" "$host:$STAGE/mesh-node.service"
    run ssh "$host" "set -e; id mesh-node >/dev/null 2>&1 || sudo useradd --system --home-dir /var/lib/mesh-node --shell /usr/sbin/nologin mesh-node; sudo install -d -m 0750 -g mesh-node /etc/mesh-node; sudo install -m 0640 -g mesh-node ~/$STAGE/config.toml /etc/mesh-node/config.toml; sed -e 's|@MESH_NODE@|$LINUX_BIN|g' -e 's|@CONFIG@|/etc/mesh-node/config.toml|g' ~/$STAGE/mesh-node.service | sudo tee /etc/systemd/system/mesh-node.service >/dev/null"
    run ssh "$host" "sudo systemctl daemon-reload && sudo systemctl enable mesh-node.service && sudo systemctl restart mesh-node.service"
}

main() {
    local args=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            --mac-bin) MAC_BIN=${2:?--mac-bin needs a path}; shift ;;
            --linux-bin) LINUX_BIN=${2:?--linux-bin needs a path}; shift ;;
            -h|--help) usage 0 ;;
            -*) echo "rollout: unknown option $1" >&2; usage 2 ;;
            *) args+=("$1") ;;
        esac
        shift
    done
    [[ ${#args[@]} -eq 2 ]] || usage 2
    HOSTS_FILE=${args[0]}
    CONFIG_DIR=${args[1]}
    [[ -r $HOSTS_FILE ]] || die "cannot read hosts file $HOSTS_FILE"
    [[ -d $CONFIG_DIR ]] || die "no such config folder $CONFIG_DIR"

    local host os extra count=0
    # The hosts file is read on fd 3: on stdin, the first ssh would swallow the remaining lines.
    while read -r -u 3 host os extra || [[ -n ${host:-} ]]; do
        [[ -z ${host:-} || $host == \#* ]] && continue
        [[ -z ${extra:-} || $extra == \#* ]] || die "$HOSTS_FILE: expected '<host> <macos|linux>', got '$host $os $extra'"
        local config
        config=$(config_for "$host")
        echo "== $host ($os): $config" >&2
        case $os in
            macos) deploy_macos "$host" "$config" ;;
            linux) deploy_linux "$host" "$config" ;;
            *) die "$HOSTS_FILE: $host: os must be macos or linux, got '${os:-}'" ;;
        esac
        count=$((count + 1))
    done 3< "$HOSTS_FILE"
    [[ $count -gt 0 ]] || die "$HOSTS_FILE lists no hosts"
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "rollout: dry run, $count host(s), nothing was changed" >&2
    else
        echo "rollout: $count host(s) updated" >&2
    fi
}

main "$@"
