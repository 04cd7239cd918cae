"""Reference: one whole training run in PyTorch on CPU, to compare with one `icm run` of the same run
(`experiments/bench-mlp-run.yaml`).

Fashion-MNIST (Debian's dataset-fashion-mnist), per-pixel standardisation from the training images,
MLP 784-512-256-10 with ReLU, SGD (momentum 0.9, weight decay 5e-4), cosine lr per epoch, batch 128,
Mixup inputs with one λ ~ Beta(0.2, 0.2) per batch and the Infinite Class Mixup loss (dual axes),
the 10,000 test images scored after every epoch. Everything a run does, timed as a whole.

Usage: python benches/pytorch/mlp_run.py [epochs=10] [threads=2] [root=/usr/share/datasets/fashion-mnist] [seed=0]
Prints one line: wall seconds, training images/second, final test accuracy.
"""
import gzip, math, os, sys, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
root = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
torch.set_num_threads(threads)
torch.manual_seed(seed)
rng = np.random.default_rng(seed)

start = time.time()

def idx(name):
    with gzip.open(os.path.join(root, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)

xtr = idx("train-images-idx3-ubyte.gz").reshape(60000, -1).astype(np.float32) / 255
ytr = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
xte = idx("t10k-images-idx3-ubyte.gz").reshape(10000, -1).astype(np.float32) / 255
yte = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
mean, std = xtr.mean(0), xtr.std(0) + 1e-6
xtr, xte = torch.from_numpy((xtr - mean) / std), torch.from_numpy((xte - mean) / std)
ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
B, C = 128, 10

def icm_loss(z, t):
    s = z @ t.T
    eye = torch.arange(s.shape[0])
    return F.cross_entropy(s, eye) + F.cross_entropy(s.T, eye)

train_s = 0.0
for epoch in range(epochs):
    for g in opt.param_groups:
        g["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    t0 = time.time()
    net.train()
    order = torch.randperm(60000)
    for i in range(0, 60000, B):
        b = order[i:i + B]
        if len(b) < 2:
            continue
        x, y = xtr[b], ytr[b]
        lam = float(rng.beta(0.2, 0.2))
        p = torch.randperm(len(b))
        xm = lam * x + (1 - lam) * x[p]
        t = lam * F.one_hot(y, C).float() + (1 - lam) * F.one_hot(y[p], C).float()
        loss = icm_loss(net(xm), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s += time.time() - t0
    net.eval()
    with torch.no_grad():
        acc = sum((net(xte[j:j + 512]).argmax(1) == yte[j:j + 512]).sum().item() for j in range(0, 10000, 512)) / 10000

wall = time.time() - start
print(f"torch {torch.__version__} threads={threads} mlp fashion-mnist epochs={epochs}: "
      f"{wall:.1f} s wall, {60000 * epochs / train_s:.0f} train img/s, test accuracy {acc:.4f}")
