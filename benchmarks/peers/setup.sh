#!/usr/bin/env bash
# Creates one virtual environment per peer library under out/peers/<name>-venv, so that their
# pins never touch recsemble's own environment. Idempotent: a venv whose install finished (it
# holds a .complete marker) is left as it is; a half-made one is rebuilt.
#
#   bash benchmarks/peers/setup.sh [lenskit] [recbole] [rectools]   (default: lenskit, recbole)
#
# implicit needs no venv of its own: it is one of recsemble's dependencies and runs from the
# project's .venv. torch==2.13.0 (the CPU build) goes in first in each venv: without it, the
# peers' plain "torch" requirement pulls a multi-GB CUDA build.
set -uo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-python3.11}"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(lenskit recbole)

packages_for() {
    case "$1" in
        # LensKit 2025.x: the API the peer script uses (from_interactions_df, topn_pipeline).
        lenskit) echo "lenskit>=2025.1,<2026" ;;
        # RecBole 1.2.1 crashes on numpy 2 (np.float) and pandas 3.
        recbole) echo "recbole==1.2.1 numpy<2 pandas<3 scipy<1.13" ;;
        # RecTools: its SASRec (the torch extra brings pytorch-lightning).
        rectools) echo "rectools[torch]==0.19.0" ;;
        *) return 1 ;;
    esac
}

status=0
for peer in "${peers[@]}"; do
    if [ "$peer" = implicit ]; then
        echo "implicit: runs from the project's .venv (a recsemble dependency); nothing to set up"
        continue
    fi
    venv="$root/out/peers/$peer-venv"
    if [ -f "$venv/.complete" ]; then
        echo "$peer: $venv is ready"
        continue
    fi
    if ! packages="$(packages_for "$peer")"; then
        echo "$peer: unknown peer (known: implicit, lenskit, recbole, rectools)" >&2
        status=1
        continue
    fi
    echo "$peer: creating $venv"
    rm -rf "$venv"
    mkdir -p "$root/out/peers"
    log="$root/out/peers/$peer-install.log"
    # shellcheck disable=SC2086  # $packages is a list of requirement words
    if "$python" -m venv "$venv" >"$log" 2>&1 \
        && "$venv/bin/pip" install --quiet "torch==2.13.0" >>"$log" 2>&1 \
        && "$venv/bin/pip" install --quiet "torch==2.13.0" $packages >>"$log" 2>&1; then
        touch "$venv/.complete"
        echo "$peer: installed ($("$venv/bin/pip" freeze 2>/dev/null | grep -i -E "^($peer|torch|numpy)==" | tr '\n' ' '))"
    else
        echo "$peer: install FAILED, see $log (last lines below)" >&2
        tail -5 "$log" >&2
        status=1
    fi
done
exit $status
