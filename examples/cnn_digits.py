"""A small CNN on scikit-learn's 8x8 digits, with BatchNorm2d (or without: --no-bn), watched."""

from __future__ import annotations

import argparse

import covshift
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F


def build(bn: bool) -> nn.Sequential:
    def norm(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if bn else nn.Identity()

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        norm(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        norm(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-bn", action="store_true", help="the same network without BN")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="train the network with and without BN on the same batches, in one watched run",
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--every", type=int, default=20, help="a frame every N steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--logdir", default=None, help="run folders go here")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    if args.compare:
        # Twins: the same initial convolution weights, so BN is the only difference.
        models = {"bn": build(bn=True), "plain": build(bn=False)}
        models["plain"].load_state_dict(models["bn"].state_dict(), strict=False)
        name = "cnn-digits-bn-vs-plain"
    else:
        models = {"bn" if not args.no_bn else "plain": build(bn=not args.no_bn)}
        name = "cnn-digits" + ("-plain" if args.no_bn else "-bn")
    optimizers = {
        key: torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        for key, model in models.items()
    }
    watched = models if args.compare else next(iter(models.values()))
    with covshift.watch(watched, name=name, every=args.every, logdir=args.logdir) as w:
        print(f"writing {w.path}")
        for _ in range(args.steps):
            index = torch.randint(0, len(x), (args.batch_size,))  # one batch for every model
            losses, accuracies = {}, {}
            for key, model in models.items():
                logits = model(x[index])
                loss = F.cross_entropy(logits, y[index])
                optimizers[key].zero_grad()
                loss.backward()
                optimizers[key].step()
                losses[key] = loss
                accuracies[key] = (logits.argmax(1) == y[index]).float().mean()
            if args.compare:
                w.step(loss=losses, acc=accuracies)
            else:
                (key,) = models
                w.step(loss=losses[key], acc=accuracies[key])
    for key, model in models.items():
        model.eval()
        with torch.no_grad():
            accuracy = (model(x).argmax(1) == y).float().mean().item()
        print(f"{key}: trained {args.steps} steps; accuracy on all digits {accuracy:.3f}")
    print(f"run folder: {w.path}")
    print(f"see it: covshift serve --logdir {w.path.parent}")


if __name__ == "__main__":
    main()
