#!/usr/bin/env bash
# Sets everything up and runs the bundled fraud-detection example in parallel on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
N="${TRANSACTIONS:-10000}"
.venv/bin/python examples/fraud_detection/generate_data.py --transactions "$N"
.venv/bin/seeknal --project examples/fraud_detection run --parallel
echo
echo "Training data: examples/fraud_detection/target/cache/exposure/training_data.parquet"
echo "Exported file: examples/fraud_detection/output/training_data.parquet"
