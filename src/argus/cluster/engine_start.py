"""What a model's replica does before its engine starts: nothing to download.

Ray Serve LLM begins every engine start with "node initialisation": a Ray task on each
node of the replica's placement group, in a worker process of its own (the replica's
runtime env makes it a fresh one), that downloads the weights from a hub or a bucket. argus
serves weights from a local folder only (`model_source` is always a resolved path on the
shared storage), so that task finds nothing to do, and took 7-11 s of each engine start
here (a new Python process importing torch and Ray LLM on a busy core); a cold start is
that much shorter without it. For a local path the task does one thing besides: it creates
torch's kernels folder (a torch workaround), which this callback does in the replica.

Ray Serve LLM loads the class named in the LLMConfig's `callback_config` in the replica;
this module imports Ray and is loaded there (and in the Ray agent), never in argus itself.
"""

import os

import torch
from ray.llm._internal.common.callbacks.base import CallbackBase


class LocalWeights(CallbackBase):  # type: ignore[misc]
    async def on_before_node_init(self) -> None:
        torch_home = torch.hub._get_torch_home()  # type: ignore[no-untyped-call]
        os.makedirs(os.path.join(torch_home, "kernels"), exist_ok=True)
        self.ctx.run_init_node = False
