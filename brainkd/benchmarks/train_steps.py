"""Worker process of the allocator benchmark: ``python -m brainkd.benchmarks.train_steps JOB_JSON``.

Prints one JSON line with the time and the minor page faults of each training step. It
imports only torch and the model factory, so that it starts quickly.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

from brainkd.models.factory import create_model


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Run one cross-entropy forward pass, backward pass and optimiser step."""
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_training_steps(job: dict) -> dict:
    """Run ``job["steps"]`` + 1 AdamW steps on random images and return each step's time and minor page faults."""
    torch.manual_seed(0)
    model = create_model(
        job["name"], num_classes=job["num_classes"], in_chans=job["in_chans"], image_size=job["image_size"], **job["options"]
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(job["batch_size"], job["in_chans"], job["image_size"], job["image_size"])
    labels = torch.randint(0, job["num_classes"], (job["batch_size"],))

    seconds, faults = [], []
    for _ in range(job["steps"] + 1):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        training_step(model, optimizer, images, labels)
        seconds.append(time.perf_counter() - started)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    return {"step_seconds": seconds, "minor_faults": faults}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(measure_training_steps(json.loads(sys.argv[1]))) + "\n")
