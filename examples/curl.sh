#!/usr/bin/env bash
# The OpenAI API through the gateway with curl: the models a key may use, a chat
# completion, a stream, a prompt with a card number in it, and an error.
#
#   bash examples/curl.sh
#
# GATEWAY_BASE_URL and GATEWAY_API_KEY point it at a gateway (default: the quickstart's,
# http://127.0.0.1:10000/v1 with the demo key sk-demo-alice); GATEWAY_MODEL picks the model.
set -euo pipefail

BASE_URL="${GATEWAY_BASE_URL:-http://127.0.0.1:10000/v1}"
KEY="${GATEWAY_API_KEY:-sk-demo-alice}"
MODEL="${GATEWAY_MODEL:-gpt-4o-mini}"
AUTH="Authorization: Bearer ${KEY}"
JSON="content-type: application/json"

echo "== the models this key may use"
curl -sS --fail-with-body "${BASE_URL}/models" -H "${AUTH}"
echo

echo "== a chat completion (x-gateway-backend names the backend that answered)"
curl -sS --fail-with-body -D - "${BASE_URL}/chat/completions" -H "${AUTH}" -H "${JSON}" \
  -d "{\"model\":\"${MODEL}\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"Hello from curl!\"}]}" \
  | grep -i -E '^(x-gateway-backend|x-request-id|x-ratelimit-[a-z-]+):|^\{'
echo

echo "== a stream, usage included as its last chunk"
curl -sS --fail-with-body -N "${BASE_URL}/chat/completions" -H "${AUTH}" -H "${JSON}" \
  -d "{\"model\":\"${MODEL}\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"Stream this, please.\"}]}"
echo

echo "== a card number: the quickstart's PII guardrail redacts it before the provider sees it"
echo "   (the quickstart's mock provider echoes what it received)"
curl -sS --fail-with-body "${BASE_URL}/chat/completions" -H "${AUTH}" -H "${JSON}" \
  -d "{\"model\":\"${MODEL}\",\"messages\":[{\"role\":\"user\",\"content\":\"Charge my card 4111 1111 1111 1111, thanks.\"}]}"
echo

echo "== an error: every error is OpenAI-shaped, {\"error\": {\"message\", \"type\", \"code\"}}"
body=$(mktemp)
trap 'rm -f "${body}"' EXIT
status=$(curl -sS -o "${body}" -w '%{http_code}' "${BASE_URL}/chat/completions" \
  -H "${AUTH}" -H "${JSON}" -d '{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}')
cat "${body}"
echo
if [ "${status}" != "404" ]; then
  echo "expected 404 model_not_found, got HTTP ${status}" >&2
  exit 1
fi
echo "HTTP ${status}: as expected"
