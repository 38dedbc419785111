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
    model = build(bn=not args.no_bn)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    name = "cnn-digits" + ("-plain" if args.no_bn else "-bn")
    with covshift.watch(
        model, name=name, every=args.every, logdir=args.logdir, optimizer=optimizer
    ) as w:
        print(f"writing {w.path}")
        for _ in range(args.steps):
            index = torch.randint(0, len(x), (args.batch_size,))
            logits = model(x[index])
            loss = F.cross_entropy(logits, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            acc = (logits.argmax(1) == y[index]).float().mean()
            w.step(loss=loss, acc=acc)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    print(f"trained {args.steps} steps; accuracy on all digits {accuracy:.3f}")
    print(f"run folder: {w.path}")
    print(f"see it: covshift serve --logdir {w.path.parent}")


if __name__ == "__main__":
    main()
