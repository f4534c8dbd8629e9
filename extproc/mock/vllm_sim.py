"""The engine of one simulated vLLM replica: its paged KV cache with automatic prefix
caching, its LoRA slots, and its continuous-batching scheduler, stepped by ONE asyncio
task per replica (not a sleep per request), so 64+ concurrent requests over 8 replicas
cost the mock little CPU.

What it models, as vLLM's V1 engine does it:
- KV cache: `kv_blocks` blocks of `block_tokens` tokens. A prompt's full blocks are named
  by a hash chain (each block's hash covers its parent's hash, its tokens and the LoRA
  adapter, as vLLM's `hash_block_tokens` with the adapter among its extra keys; Python's
  `hash`, vLLM's `builtin` algorithm). A request's leading blocks already cached are hits
  and cost no prefill; at least the prompt's last token is always computed. Blocks held
  by running requests are pinned; cached blocks no request holds stay until evicted, least
  recently used first (a finished request's blocks are freed tail first, so a prefix's
  tail goes before its head). A finished answer's full blocks stay cached too (named by
  the chain continued over the answer's tokens), so a conversation's next turn, which
  repeats the answer, hits them.
- KV use (`vllm:kv_cache_usage_perc`): the blocks running requests hold over all blocks,
  as vLLM's BlockPool.get_usage counts it (cached blocks no request holds are evictable,
  so they count as free).
- Admission: FIFO, at most `max_batch` running sequences (vLLM's max_num_seqs). A
  request is admitted when the blocks for its whole prompt and `max_tokens` output fit
  (reserved up front: no preemption); else it and those behind it wait. A request whose
  adapter cannot get a LoRA slot (`max_loras` slots, all held by running requests) is
  skipped and waits, as vLLM's scheduler skips it. Loading an adapter into a slot adds
  `lora_load_ms` to the step (an estimate: a rank-16 adapter of an 8B model is ~50 MB,
  copied from host memory at ~20 GB/s in a few ms; vLLM keeps max_cpu_loras in host memory).
- Steps: each step every running sequence past its prefill emits one token; prompts are
  prefilled in chunks within a budget of `max_batched_tokens` tokens a step (chunked
  prefill, on by default in vLLM V1), the first token coming at the end of the step that
  finishes the prefill. A step takes
      decode_ms_per_step + decode_ms_per_seq x decoding sequences
      + prefill_ms_per_token x prompt tokens prefilled in it
  all x `time_scale`.

Calibration (Llama-3.1-8B-Instruct, BF16, one A100-80GB under vLLM; an H100 is ~2x faster):
- prefill 0.08 ms a token (~12,500 tokens/s: 8B parameters are ~16 GFLOP a token, at ~50%
  of the A100's 312 TFLOPS);
- decode 12 ms a step at batch 1 (memory bound: 16 GB of weights read at ~2 TB/s is 8 ms,
  plus overheads), +0.12 ms per sequence in the batch: 15.8 ms at 32 (~2,000 tokens/s),
  19.7 ms at 64 (~3,250 tokens/s), 42.7 ms at 256 (~6,000 tokens/s).
Measured on this engine (1,000-token prompts, 200-token answers): one request, TTFT 105 ms
and 80 tokens/s; 32 concurrent, ~1,100 output tokens/s; 256 concurrent, ~1,700
(prefill-bound). Checked against published vLLM figures: Lambda Labs' vLLM benchmarks (H100
~2x A100 on Llama 3.1 8B), vLLM's v0.6.0 performance post (Llama 8B on one H100), Red Hat's
MLPerf Inference v5.1 result (Llama 3.1 8B FP8, one H100, 5,777 tokens/s offline) and a vLLM
V1 Llama-3.1-8B run on an H200 MIG slice (~1,085 tokens/s at batch 16, where this gives
~1,150). docs/configuration.md (`vllm_pools`) repeats them.
- KV cache: 2048 blocks of 16 tokens (32,768 tokens) by default, far below an 80 GB GPU's
  ~400,000 tokens (128 KiB a token for Llama-3.1-8B), so a benchmark's prompts fill it and
  eviction shows; `max_batch` 32 (vLLM's default max_num_seqs is 256) so queues show at
  modest load.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields

MAX_LAG_S = 0.05        # how far the engine may run behind its clock and catch up
# vLLM's buckets for vllm:time_to_first_token_seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)


@dataclass(frozen=True)
class EngineSpec:
    """One replica's engine settings (a `vllm_pools:` entry's keys of the same names)."""
    kv_blocks: int = 2048
    block_tokens: int = 16
    max_batch: int = 32                 # vLLM's max_num_seqs
    max_batched_tokens: int = 8192      # vLLM's max_num_batched_tokens (the chunked-prefill budget)
    max_loras: int = 4
    lora_load_ms: float = 5.0           # putting an adapter in a GPU slot (from host memory)
    max_model_len: int = 0              # 0: 32,768; never past what the KV cache holds
    prefill_ms_per_token: float = 0.08
    decode_ms_per_step: float = 12.0
    decode_ms_per_seq: float = 0.12
    default_max_tokens: int = 64        # the output length when a request sets none
    max_output_tokens: int = 4096       # the most one request generates
    time_scale: float = 1.0             # multiplies every simulated delay (tests: 0.05)

    @classmethod
    def from_config(cls, item: dict) -> "EngineSpec":
        known = {f.name: f.type for f in fields(cls)}
        given = {}
        for name in known:
            if name in item:
                value = item[name]
                if type(value) not in (int, float):
                    raise ValueError(f"{name} must be a number")
                given[name] = float(value) if known[name] == "float" else int(value)
        spec = cls(**given)
        if spec.kv_blocks < 1 or spec.block_tokens < 1 or spec.max_batch < 1 or spec.time_scale < 0:
            raise ValueError("kv_blocks, block_tokens and max_batch must be at least 1, time_scale at least 0")
        return spec

    @property
    def context_limit(self) -> int:
        # Never past what the KV cache holds: a request it cannot hold would wait forever.
        return min(self.max_model_len or 32768, self.kv_blocks * self.block_tokens)


def block_hashes(token_ids: list[int], block_tokens: int, adapter: str | None,
                 parent: int | None = None) -> list[int]:
    """The hash chain of a prompt's full blocks (~0.5 µs a block); from `parent` (the hash
    of the block before `token_ids`'s first) to continue a chain."""
    parent = hash(("vllm-mock", adapter)) if parent is None else parent
    hashes = []
    for start in range(0, len(token_ids) - block_tokens + 1, block_tokens):
        parent = hash((parent, tuple(token_ids[start:start + block_tokens])))
        hashes.append(parent)
    return hashes


EVER_KEPT = 2_000_000      # blocks a cache remembers having held, to count those computed again


class PrefixCache:
    """The paged KV cache: cached full blocks by hash (held ones ref-counted, free ones in
    LRU order), and the private blocks running sequences hold beyond their prompt's full
    blocks (the partial last block and the output)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held: dict[int, int] = {}                  # hash -> running sequences holding it
        self.free: OrderedDict[int, None] = OrderedDict()   # cached, held by none: least recent first
        self.private = 0
        self.evicted = 0                                # cached blocks evicted (the mock's own count)
        self.refilled = 0                               # blocks computed again after their eviction
        self._ever: set[int] = set()                    # every block this cache has held (bounded)

    def in_use(self) -> int:
        return len(self.held) + self.private

    def hit_blocks(self, hashes: list[int]) -> int:
        """How many of the leading blocks are cached."""
        count = 0
        for h in hashes:
            if h not in self.held and h not in self.free:
                break
            count += 1
        return count

    def try_allocate(self, hashes: list[int], private: int) -> bool:
        """Pins the cached blocks of `hashes`, takes new ones for the rest and `private`
        more, evicting least recently used free blocks; False (nothing changed) when they
        do not fit beside the blocks running sequences hold."""
        new = sum(1 for h in hashes if h not in self.held and h not in self.free) + private
        reused_free = sum(1 for h in hashes if h in self.free)
        if self.in_use() + reused_free + new > self.total:
            return False
        for h in hashes:
            if h in self.free:
                del self.free[h]
            elif h not in self.held:                    # computed now: again, or for the first time
                if h in self._ever:
                    self.refilled += 1
                elif len(self._ever) < EVER_KEPT:
                    self._ever.add(h)
            self.held[h] = self.held.get(h, 0) + 1
        self.private += private
        while len(self.held) + self.private + len(self.free) > self.total:
            self.free.popitem(last=False)               # evict the least recently used
            self.evicted += 1
        return True

    def release(self, hashes: list[int], private: int, generated: list[int] = ()) -> None:
        """A sequence's blocks freed; `generated` names the full blocks of its answer, kept
        cached, to be evicted before its prompt's (its private blocks held them; an answer
        of more real tokens than simulated ones may evict a few more)."""
        for h in reversed(generated):
            if h not in self.held:
                self.free[h] = None
                self.free.move_to_end(h)
        for h in reversed(hashes):                      # tail first: evicted before the head
            left = self.held.get(h, 0) - 1
            if left > 0:
                self.held[h] = left
            else:
                self.held.pop(h, None)
                self.free[h] = None
        self.private -= private
        while len(self.held) + self.private + len(self.free) > self.total:
            self.free.popitem(last=False)
            self.evicted += 1

    def clear_free(self) -> None:
        self.free.clear()
        self.evicted = self.refilled = 0
        self._ever = set(self.held)


class Sequence:
    """One request in the engine. The handler awaits `progress` (set after every step that
    advanced it) and reads `generated`, `cached_tokens`, `finished`, `failed`."""
    __slots__ = ("prompt_tokens", "hashes", "max_tokens", "adapter", "cached_tokens", "prefilled",
                 "generated", "private", "arrived", "first_token_at", "progress", "finished", "failed",
                 "admitted", "reason", "generated_hashes")

    def __init__(self, prompt_tokens: int, hashes: list[int], max_tokens: int, adapter: str | None,
                 reason: str = "length") -> None:
        self.prompt_tokens, self.hashes, self.max_tokens, self.adapter = prompt_tokens, hashes, max_tokens, adapter
        self.reason = reason                    # the finish_reason when max_tokens is reached
        self.generated_hashes: list[int] = []   # the answer's full blocks, cached when it ends
        self.cached_tokens = self.prefilled = self.generated = self.private = 0
        self.arrived = time.monotonic()
        self.first_token_at: float | None = None
        self.progress = asyncio.Event()
        self.finished = self.failed = self.admitted = False


@dataclass
class Counters:
    """What /metrics reports beyond the gauges (vLLM's counters and TTFT histogram)."""
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    finished: dict[str, int] = field(default_factory=dict)      # finished_reason -> requests
    ttft_buckets: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_count: int = 0
    ttft_sum: float = 0.0

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_count += 1
        self.ttft_sum += seconds
        for index, bound in enumerate(TTFT_BUCKETS):
            if seconds <= bound:
                self.ttft_buckets[index] += 1


class Engine:
    """One replica's engine: submit() a sequence, its handler awaits its progress."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.cache = PrefixCache(spec.kv_blocks)
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.loras: OrderedDict[str, None] = OrderedDict()   # adapters in GPU slots, least recent first
        self.counters = Counters()
        self.lora_info: OrderedDict[tuple[str, str], float] = OrderedDict()  # vllm:lora_requests_info series
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._load_ms = 0.0

    # --- life -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def crash(self) -> None:
        """A killed pod: every request fails, the KV cache, LoRA slots and counters are gone."""
        for seq in [*self.running, *self.waiting]:
            seq.failed = True
            seq.progress.set()
        self.running.clear()
        self.waiting.clear()
        self.cache = PrefixCache(self.spec.kv_blocks)
        self.loras.clear()
        self.counters = Counters()
        self.lora_info.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def reset(self) -> None:
        """The KV cache's free blocks and the counters emptied (running requests go on)."""
        self.cache.clear_free()
        self.counters = Counters()

    # --- requests -------------------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        self.waiting.append(seq)
        self._note_lora()
        self._wake.set()

    def abort(self, seq: Sequence) -> None:
        """The client went away: its sequence leaves the engine, its blocks freed."""
        if seq in self.waiting:
            self.waiting.remove(seq)
        elif seq in self.running:
            self._finish(seq, "abort")

    def kv_usage(self) -> float:
        return self.cache.in_use() / self.cache.total

    # --- the scheduler --------------------------------------------------------------

    def _lora_slot(self, adapter: str | None) -> bool:
        """Whether `adapter` has (or now gets) a GPU slot; base-model requests need none."""
        if adapter is None:
            return True
        if adapter in self.loras:
            self.loras.move_to_end(adapter)
            return True
        if len(self.loras) >= max(1, self.spec.max_loras):
            busy = {s.adapter for s in self.running}
            idle = next((name for name in self.loras if name not in busy), None)
            if idle is None:
                return False
            del self.loras[idle]                        # the least recently used idle adapter
        self.loras[adapter] = None
        self._load_ms += self.spec.lora_load_ms         # the next step waits for the copy
        return True

    def _admit(self) -> None:
        spec = self.spec
        index = 0
        while index < len(self.waiting) and len(self.running) < spec.max_batch:
            seq = self.waiting[index]
            if not self._lora_slot(seq.adapter):
                index += 1                              # vLLM skips it; it waits for a slot
                continue
            hits = self.cache.hit_blocks(seq.hashes)
            # The last token is always computed: a prompt wholly cached gives back its last block.
            cached = min(hits * spec.block_tokens, seq.prompt_tokens - 1) // spec.block_tokens * spec.block_tokens
            total_blocks = -(-(seq.prompt_tokens + seq.max_tokens) // spec.block_tokens)
            private = max(0, total_blocks - len(seq.hashes))
            if not self.cache.try_allocate(seq.hashes, private):
                break                                   # FIFO: the queue waits for blocks
            del self.waiting[index]
            seq.private, seq.cached_tokens, seq.prefilled, seq.admitted = private, max(cached, 0), max(cached, 0), True
            counters = self.counters
            counters.prefix_queries += seq.prompt_tokens
            counters.prefix_hits += seq.cached_tokens
            counters.prompt_tokens += seq.prompt_tokens
            self.running.append(seq)

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.running.remove(seq)
        self.cache.release(seq.hashes, seq.private, seq.generated_hashes if reason != "abort" else ())
        seq.finished = True
        self.counters.finished[reason] = self.counters.finished.get(reason, 0) + 1
        seq.progress.set()

    def _note_lora(self) -> None:
        """vLLM sets vllm:lora_requests_info{running,waiting,max_lora} to the time, each
        label set its own series: the newest is the truth."""
        running = ",".join(dict.fromkeys(s.adapter for s in self.running if s.adapter))
        waiting = ",".join(dict.fromkeys(s.adapter for s in self.waiting if s.adapter))
        key = (running, waiting)
        self.lora_info.pop(key, None)
        self.lora_info[key] = time.time()
        while len(self.lora_info) > 16:
            self.lora_info.popitem(last=False)

    async def _run(self) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._admit()
            if not self.running:
                self._note_lora()
                self._wake.clear()
                await self._wake.wait()
                next_at = loop.time()
                continue
            decoding = [s for s in self.running if s.prefilled >= s.prompt_tokens]
            budget = spec.max_batched_tokens - len(decoding)
            chunks: list[tuple[Sequence, int]] = []
            for seq in self.running:
                if budget <= 0:
                    break
                left = seq.prompt_tokens - seq.prefilled
                if left > 0:
                    chunk = min(left, budget)
                    chunks.append((seq, chunk))
                    budget -= chunk
            prefill = sum(chunk for _, chunk in chunks)
            step_ms = (spec.decode_ms_per_step + spec.decode_ms_per_seq * len(decoding)
                       + spec.prefill_ms_per_token * prefill + self._load_ms)
            self._load_ms = 0.0
            # Steps are laid end to end on the clock, so a late wake-up (the event loop's timers
            # are ~1 ms coarse: a step at a small time_scale is shorter) is made up by the next
            # steps rather than slowing the engine; a debt past MAX_LAG_S (a starved host) is dropped.
            now = loop.time()
            next_at = (now if next_at < now - MAX_LAG_S else next_at) + step_ms * spec.time_scale / 1000
            self._note_lora()
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self._apply_step(decoding, chunks)

    def _apply_step(self, decoding: list[Sequence], chunks: list[tuple[Sequence, int]]) -> None:
        now = time.monotonic()
        scale = self.spec.time_scale or 1.0
        counters = self.counters
        advanced = []
        for seq in decoding:
            if seq.finished:                            # aborted while the step ran
                continue
            seq.generated += 1
            advanced.append(seq)
        for seq, chunk in chunks:
            if seq.finished:
                continue
            seq.prefilled += chunk
            if seq.prefilled >= seq.prompt_tokens:       # the prefill's step gives the first token
                seq.generated = 1
                seq.first_token_at = now
                counters.observe_ttft((now - seq.arrived) / scale)
                advanced.append(seq)
        counters.generation_tokens += len(advanced)
        for seq in advanced:
            if seq.generated >= seq.max_tokens:
                self._finish(seq, seq.reason)
            else:
                seq.progress.set()
