#!/usr/bin/env bash
# The main demo: start the local deployment, apply the example agents, run them, stop everything.
# Used by `make demo`; CORTEX_HOME defaults to ~/.cortex.
set -euo pipefail
cd "$(dirname "$0")/.."
CORTEX=.venv/bin/cortex


.venv/bin/python - <<'PY'
import sqlite3, pathlib
db = pathlib.Path("examples/research/data/papers.db")
with sqlite3.connect(db) as conn:
    conn.executescript(pathlib.Path("examples/research/data/papers.sql").read_text())
print(f"built {db}")
PY

$CORTEX up --detach
trap '$CORTEX down' EXIT
$CORTEX apply examples/research
$CORTEX apply examples/dag-demo

echo; echo "== dag-demo (scripted model): a multi-wave DAG streaming at 20 ms per token"
$CORTEX run dag-demo "Show me a multi-wave DAG."

echo; echo "== research-assistant (local Gemma 3 270M, grammar-constrained)"
$CORTEX run research-assistant "${1:-Which paper about agents is cited most?}" \
  || echo "(the 270M base model did not reach an answer this time: see examples/README.md)"
