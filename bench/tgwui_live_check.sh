#!/usr/bin/env bash
# Live check of Pocket Pack inside the REAL text-generation-webui (TGWUI) API server.
#
#   bench/tgwui_live_check.sh TGWUI_DIR PYTHON [PORT]
#
# TGWUI_DIR: a TGWUI checkout with the pack installed by installer/install.py (extensions/memory
#            and extensions/rag-enhancer present). PYTHON: a Python that has TGWUI's requirements
#            (Transformers loader, fastapi/uvicorn/sse-starlette for --api) and pocketpack[tgwui].
# What it does, and why:
#   1. builds a tiny 2-layer Llama with a BPE tokenizer trained here (nothing is downloaded) into
#      TGWUI_DIR/user_data/models/pp-tiny-llama, so the Transformers loader has a real model;
#   2. moves existing pack stores (user_data/pocketpack/{memory,documents}) aside to *.bak-<time>
#      so a memory from an earlier run cannot make the check pass;
#   3. ingests a small text with `pocketpack rag --store <user_data>/pocketpack/documents ingest`
#      (the rag-enhancer extension's default store);
#   4. starts `server.py --nowebui --api --verbose --extensions memory rag-enhancer` (TGWUI's
#      --verbose prints every prompt), calls /v1/chat/completions three times: a fact, a question
#      about it, a question about the document;
#   5. checks: the memory store (exported with `pocketpack memory --store ... export`) holds the
#      fact; the second prompt TGWUI printed holds the remembered fact; the third prompt holds a
#      `[1]` labelled document chunk. Prints PASS/FAIL lines; exit status 0 only if all pass.
# The model's replies are gibberish; only the prompts and the stores are checked.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 TGWUI_DIR PYTHON [PORT]" >&2
    exit 2
fi
TGWUI=$(cd "$1" && pwd) || { echo "FAIL no such folder: $1" >&2; exit 2; }
PY=$2
PORT=${3:-5055}
MODEL=pp-tiny-llama
UD="$TGWUI/user_data"
WORK=$(mktemp -d /tmp/tgwui_live_check.XXXXXX)
LOG="$WORK/server.log"
FAILS=0
SERVER_PID=""

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$SERVER_PID" 2>/dev/null
    fi
}
trap cleanup EXIT

for f in server.py modules/extensions.py extensions/memory/script.py extensions/rag-enhancer/script.py; do
    [ -f "$TGWUI/$f" ] || { fail "missing $TGWUI/$f (install the pack with installer/install.py first)"; exit 1; }
done
"$PY" -c "import pocketpack, transformers, torch, fastapi, uvicorn, sse_starlette" \
    || { fail "$PY lacks pocketpack or TGWUI's API requirements"; exit 1; }
echo "work dir: $WORK"
"$PY" -c "import pocketpack, transformers, torch, huggingface_hub as h; print('versions: pocketpack', pocketpack.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__, '| huggingface_hub', h.__version__)"

# -- 1. tiny model -------------------------------------------------------------------------------
if [ ! -f "$UD/models/$MODEL/config.json" ]; then
    "$PY" - "$UD/models/$MODEL" <<'EOF' || { fail "could not build the tiny model"; exit 1; }
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

folder = Path(sys.argv[1])
text = ("my sister lena lives in porto and works as a marine biologist . what does my sister do ? "
        "the lighthouse lamp is cleaned every tuesday morning by the keeper . "
        "you are a helpful assistant . the user asked a question and the assistant answered . ")
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([text] * 8, trainers.BpeTrainer(
    vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
# ChatML-style template so TGWUI's instruct mode has a template to render
hf.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
folder.mkdir(parents=True, exist_ok=True)
hf.save_pretrained(folder)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                     bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id,
                     pad_token_id=hf.pad_token_id, tie_word_embeddings=False)
model = LlamaForCausalLM(config)
# a few seconds of training on the same text, so replies are words, not padding (an empty reply
# would leave the assistant side of an exchange with nothing to store)
ids = hf(text * 2, return_tensors="pt").input_ids
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
torch.set_num_threads(1)
for _ in range(150):
    start = int(torch.randint(0, ids.shape[1] - 32, (1,)))
    batch = ids[:, start:start + 32]
    model(input_ids=batch, labels=batch).loss.backward()
    opt.step()
    opt.zero_grad()
model.eval()
model.save_pretrained(folder, safe_serialization=True)
print("built", folder)
EOF
fi
[ -f "$UD/models/$MODEL/config.json" ] && pass "tiny model at $UD/models/$MODEL"

# -- 2. fresh pack stores --------------------------------------------------------------------------
STAMP=$(date +%Y%m%d%H%M%S)
for d in memory documents; do
    if [ -e "$UD/pocketpack/$d" ]; then
        mv "$UD/pocketpack/$d" "$UD/pocketpack/$d.bak-$STAMP" && echo "moved old store aside: $UD/pocketpack/$d.bak-$STAMP"
    fi
done

# -- 3. a document for rag-enhancer ------------------------------------------------------------------
DOC="$WORK/lighthouse.txt"
cat > "$DOC" <<'EOF'
Keeper's notes for the Cabo Aurora lighthouse.

The lighthouse lamp is cleaned every Tuesday morning by the keeper, before the fog signal test.
The fog signal is tested at noon on the first day of each month.
Spare bulbs are kept in the oak cabinet on the second landing of the tower stairs.
EOF
if (cd "$TGWUI" && "$PY" -m pocketpack rag --store "$UD/pocketpack/documents" ingest "$DOC" --quiet) > "$WORK/ingest.txt" 2>&1; then
    pass "ingested $DOC into $UD/pocketpack/documents: $(tail -1 "$WORK/ingest.txt")"
else
    fail "pocketpack rag ingest: $(tail -3 "$WORK/ingest.txt")"
fi

# -- 4. the real TGWUI API server ---------------------------------------------------------------------
(cd "$TGWUI" && exec "$PY" server.py --nowebui --api --api-port "$PORT" --verbose \
    --extensions memory rag-enhancer --model "$MODEL" --loader Transformers --cpu) > "$LOG" 2>&1 &
SERVER_PID=$!
echo "server pid $SERVER_PID, log $LOG"
up=""
for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=2)" 2>/dev/null; then
        up=1; break
    fi
    sleep 1
done
if [ -z "$up" ]; then
    fail "TGWUI API server did not come up on port $PORT; last log lines:"
    tail -40 "$LOG"
    exit 1
fi
pass "TGWUI API server up on port $PORT (server.py --nowebui --api --extensions memory rag-enhancer)"
grep -E "Loaded the model|Loading the extension|extension" "$LOG" | sed 's/^/  log: /' | head -10

# Sends one chat request and writes the prompt TGWUI printed for it (text after "PROMPT=") to a file.
"$PY" - "$PORT" "$LOG" "$WORK" <<'EOF'
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

port, log, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ANSI = re.compile(r"\x1b\[[0-9;]*m")
messages = {
    "1": "My sister Lena lives in Porto and works as a marine biologist.",
    "2": "What does my sister do?",
    "3": "When is the lighthouse lamp cleaned?",
}
for n, text in messages.items():
    start = log.stat().st_size
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 12, "temperature": 0}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        reply = json.load(r)
    time.sleep(1.0)  # let the server's stdout reach the log
    with open(log, "rb") as f:
        f.seek(start)
        segment = ANSI.sub("", f.read().decode("utf-8", "replace"))
    prompt = ""
    if "PROMPT=" in segment:
        after = segment.split("PROMPT=", 1)[1].split("\n", 1)[1] if "\n" in segment.split("PROMPT=", 1)[1] else ""
        # the prompt ends where TGWUI's next log line starts (a timestamped "INFO"/"DEBUG" line)
        prompt = re.split(r"\n\d\d:\d\d:\d\d-\d+\s|\nOutput generated", after)[0]
    (work / f"prompt{n}.txt").write_text(prompt)
    (work / f"reply{n}.json").write_text(json.dumps(reply, indent=1))
    print(f"request {n}: {text!r} -> reply {reply['choices'][0]['message']['content']!r}")
    print(f"--- prompt {n} as TGWUI printed it ---\n{prompt.rstrip()}\n--- end prompt {n} ---")
EOF
[ $? -eq 0 ] && pass "three /v1/chat/completions calls answered" || fail "a /v1/chat/completions call failed"

# -- 5. checks ------------------------------------------------------------------------------------------
"$PY" -m pocketpack memory --store "$UD/pocketpack/memory" export > "$WORK/memory.jsonl" 2> "$WORK/export.err"
if "$PY" - "$WORK/memory.jsonl" "$WORK/reply1.json" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
reply = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
fact = [r for r in rows if r["role"] == "user" and "Lena lives in Porto" in r["text"]]
if not fact:
    sys.exit("no user memory holding 'Lena lives in Porto'")
answer = [r for r in rows if r["role"] == "assistant" and r.get("chat") == fact[0].get("chat")]
if reply.strip() and not any(reply.strip() in r["text"] or r["text"] in reply for r in answer):
    sys.exit(f"the first reply {reply!r} was not stored as an assistant memory of chat {fact[0].get('chat')}")
print(f"user memory id {fact[0]['id']} and {len(answer)} assistant memory(ies) in chat {fact[0].get('chat')}")
EOF
then
    pass "memory store $UD/pocketpack/memory holds the first exchange ($(wc -l < "$WORK/memory.jsonl") memories):"
    sed 's/^/  /' "$WORK/memory.jsonl" | cut -c1-300
else
    fail "memory store has no 'Lena lives in Porto' (export: $(head -c 300 "$WORK/memory.jsonl") $(tail -3 "$WORK/export.err"))"
fi
if [ ! -s "$WORK/prompt1.txt" ]; then fail "no prompt printed for request 1 (is --verbose on?)"; fi
if grep -q "Porto" "$WORK/prompt2.txt" 2>/dev/null && grep -q "marine biologist" "$WORK/prompt2.txt"; then
    pass "prompt 2 ('What does my sister do?') contains the remembered fact"
else
    fail "prompt 2 lacks the remembered fact (see $WORK/prompt2.txt)"
fi
if grep -q "End of memories" "$WORK/prompt1.txt" 2>/dev/null; then
    fail "prompt 1 already had a memory block (the store was not empty)"
fi
if grep -q "\[1\]" "$WORK/prompt3.txt" 2>/dev/null && grep -qi "Tuesday" "$WORK/prompt3.txt"; then
    pass "prompt 3 ('When is the lighthouse lamp cleaned?') contains a [1] labelled document chunk"
else
    fail "prompt 3 lacks a [1] labelled chunk (see $WORK/prompt3.txt)"
fi
if grep -qE "Traceback|ERROR" "$LOG"; then
    echo "note: the server log has errors:"; grep -nE -A3 "Traceback|ERROR" "$LOG" | head -30
fi

echo "server log: $LOG"
if [ "$FAILS" -eq 0 ]; then echo "ALL PASS"; else echo "$FAILS FAIL(S)"; fi
[ "$FAILS" -eq 0 ]
