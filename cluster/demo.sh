#!/usr/bin/env bash
# The whole tandem pipeline on synthetic data, each step a Ray job on the local head
# started by `make up`: generate -> features -> train (propensity + recommender)
# -> precompute to Redis -> deploy the Serve app -> curl it -> 10 s of wrk against it (2 and 4 connections)
# -> an A/B experiment with simulated visitors and its KPI report.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR=${TANDEM_RUN_DIR:-$ROOT/.run}
# shellcheck disable=SC1091
source "$RUN_DIR/env"

EVENTS=${TANDEM_DEMO_EVENTS:-1000000}
DATA=$ROOT/data/demo
REGISTRY=$ROOT/artifacts/registry
API_KEY=${TANDEM_DEMO_API_KEY:-demo-key}
START=$(date +%s)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
submit() {
  # Every pipeline step is a Ray job: same code path as on a production cluster.
  # `ray job submit` waits, streams the job's logs and exits non-zero when the job fails.
  local attempt rc
  for attempt in 1 2 3 4 5; do
    set +e
    ray job submit --address "$RAY_ADDRESS" --working-dir . \
        --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}}' \
        -- "$@" 2>&1 | tee "$RUN_DIR/last_submit.log" \
      | grep --line-buffered -vE "packaging.py|dashboard_sdk.py|working_dir.py|sdk.py:|cli.py:|job_manager.py|worker.py:|streaming_executor|util.py:|dataset.py:|raylet|core_worker|Running Dataset|Tip:|^\s*$"
    rc=${PIPESTATUS[0]}
    set -e
    # The head's job agent can lag the dashboard right after `make up`: retry that case only.
    grep -q "No available agent to submit job" "$RUN_DIR/last_submit.log" || break
    echo "the job agent is not ready yet; retrying in 5 s ($attempt/5)"
    sleep 5
  done
  [ "$rc" -eq 0 ] || { echo "step failed (exit $rc): $*" >&2; exit "$rc"; }
}

step "1/6 generate $EVENTS synthetic events"
submit python -m jobs.generate --events "$EVENTS" --out "$DATA/events" --seed 7

step "2/6 features (Ray Data: sessionize, session/user/item features, labels, sequences)"
submit python -m jobs.features --events "$DATA/events" --out "$DATA/features"

step "3/6 train the purchase-propensity model (Ray Train LightGBMTrainer) and register it"
submit python -m jobs.train_propensity --features "$DATA/features/sessions" --label purchased \
  --time-column cutoff_time --registry "$REGISTRY" --json

step "4/6 train the session recommender and register it"
submit python -m jobs.train_recommender --train "$DATA/features/sequences" --format parquet \
  --model vsknn --test-fraction 0.01 --registry "$REGISTRY" --promote --json

step "5/6 precompute scores, top-K and popular items to Redis (versioned, atomic pointer flip)"
# Scores for every session; top-K only for sessions active in the last day (the ones that come back).
submit python -m jobs.precompute --features "$DATA/features" --registry "$REGISTRY" --redis "$TANDEM_REDIS_URL" \
  --tables score,popular
submit python -m jobs.precompute --features "$DATA/features" --registry "$REGISTRY" --redis "$TANDEM_REDIS_URL" \
  --tables recs --recent-hours 24

step "6/6 deploy the Serve application (serve deploy; HAProxy ingress, one replica per core)"
python -m jobs.deploy --config serve/config.yaml --registry "$REGISTRY" --redis "$TANDEM_REDIS_URL" \
  --api-key "$API_KEY=default" --address "$RAY_ADDRESS" --http-port "$TANDEM_SERVE_PORT" \
  --out "$RUN_DIR/serve.resolved.yaml" --wait

SESSION=$(python - "$DATA/features/sessions" <<'EOF'
import sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1]).head(1, columns=["session_id"])
print(t["session_id"][0].as_py())
EOF
)

step "try it"
show() { echo "\$ $1"; eval "$1"; echo; }
show "curl -s -X POST $TANDEM_SERVE_URL/v1/score -H 'X-API-Key: $API_KEY' -H 'Content-Type: application/json' -d '{\"session_id\": \"$SESSION\"}'"
show "curl -s -X POST $TANDEM_SERVE_URL/v1/score -H 'X-API-Key: $API_KEY' -H 'Content-Type: application/json' -d '{\"session_id\": \"new-visitor-1\", \"deadline_ms\": 50, \"events\": [{\"item_id\": \"i12\", \"event_type\": \"view\", \"event_time\": \"2026-11-24T12:00:00Z\", \"price\": 19.9}, {\"item_id\": \"i12\", \"event_type\": \"cart\", \"event_time\": \"2026-11-24T12:01:10Z\", \"price\": 19.9}]}'"
show "curl -s -X POST $TANDEM_SERVE_URL/v1/events -H 'X-API-Key: $API_KEY' -H 'Content-Type: application/json' -d '{\"session_id\": \"new-visitor-1\", \"batch_id\": \"new-visitor-1-b1\", \"events\": [{\"item_id\": \"i40\", \"event_type\": \"view\", \"event_time\": \"2026-11-24T12:02:00Z\"}]}'"
show "curl -s -X POST $TANDEM_SERVE_URL/v1/recommend -H 'X-API-Key: $API_KEY' -H 'Content-Type: application/json' -d '{\"session_id\": \"new-visitor-1\", \"k\": 5}'"
show "curl -s -o /dev/null -w '%{http_code}\n' -X POST $TANDEM_SERVE_URL/v1/score -H 'X-API-Key: $API_KEY' -H 'Content-Type: application/json' -d '{\"session_id\": 42, \"deadline_ms\": -1}'"
show "curl -s $TANDEM_SERVE_URL/v1/health"
show "curl -s $TANDEM_SERVE_URL/v1/health -H 'X-API-Key: $API_KEY'"

step "load: 10 s of wrk on /v1/score at 2 and at 4 connections (random known sessions)"
python -m bench.serve --target live --url "$TANDEM_SERVE_URL" --api-key "$API_KEY" --endpoints score \
  --connections 2,4 --duration 10 --warmup 2 --sessions-from "$DATA/features/sessions" | grep -v '^{'

step "A/B experiment: popular (control) vs the models, simulated visitors with a known +30 % lift, KPI report"
# Stored next to the models; every replica re-reads it within 2 s. Responses name the variant, each
# shown page is an exposure (Redis stream), outcomes are the visitors' /v1/events; drained to Parquet.
EXP_LOGS=$DATA/experiment_logs
rm -rf "$EXP_LOGS"
python -m jobs.experiment create --registry "$REGISTRY" --experiment cluster/demo_experiment.yaml --reason demo
for _ in $(seq 60); do  # until the replicas serve it (/v1/health names it), then one more poll interval
  curl -s "$TANDEM_SERVE_URL/v1/health" -H "X-API-Key: $API_KEY" | grep -q demo-personalisation && break
  sleep 0.5
done
sleep 2
python -m jobs.simulate --url "$TANDEM_SERVE_URL" --api-key "$API_KEY" --sessions "${TANDEM_DEMO_AB_SESSIONS:-1200}" \
  --concurrency 8 --conversion 0.2 --lift model=0.3 --session-prefix "demo$START"
python -m jobs.drain_exposures --redis "$TANDEM_REDIS_URL" --registry "$REGISTRY" --logs "$EXP_LOGS" | tail -1
# 6-second ticks for the plots over time (the refresh loop's are 5 minutes; this run lasts about a minute)
KPI_REPORT=$(python -m jobs.kpi_report --registry "$REGISTRY" --logs "$EXP_LOGS" --screenshot --tick-minutes 0.1 \
  --out "$ROOT/artifacts/reports/kpi-demo-personalisation.html" | tail -1)
echo "$KPI_REPORT"

cat <<EOF
Demo finished in $(( $(date +%s) - START )) s.
  Ray dashboard:   $RAY_ADDRESS   (jobs, Serve, metrics; the token is in .run/auth_token)
  OpenAPI docs:    $TANDEM_SERVE_URL/docs
  Prometheus:      $TANDEM_METRICS_URL   (Ray + Serve + tandem metrics, scrape target)
  Submit a job:    source .run/env && ray job submit --working-dir . -- python -m jobs.features --help
  Load test:       python -m bench.serve --target live   (60 s a point, /v1/score and /v1/recommend)
  $KPI_REPORT
  Kill switch:     python -m jobs.experiment kill --registry $REGISTRY --reason "..."   (all traffic to control)
  Stop everything: make down
EOF
