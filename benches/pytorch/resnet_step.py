"""Reference training-step throughput of a CIFAR ResNet in PyTorch on CPU.

Usage: python benches/pytorch/resnet_step.py [depth=20] [batch=128] [steps=5] [classes=10] [loss=icm|ce]
Prints images/second for a full SGD step (forward, ICM or soft-label CE loss, backward, update).
"""
import sys, time
import torch, torch.nn as nn, torch.nn.functional as F

depth = int(sys.argv[1]) if len(sys.argv) > 1 else 20
B = int(sys.argv[2]) if len(sys.argv) > 2 else 128
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
C = int(sys.argv[4]) if len(sys.argv) > 4 else 10
loss_kind = sys.argv[5] if len(sys.argv) > 5 else "icm"
torch.manual_seed(0)

class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.down = stride != 1 or cin != cout
        s.pad = cout - cin
    def forward(s, x):
        r = F.relu(s.b1(s.c1(x)))
        r = s.b2(s.c2(r))
        sc = x
        if s.down:
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, s.pad))
        return F.relu(r + sc)

class ResNet(nn.Module):
    def __init__(s, depth, C):
        super().__init__()
        n = (depth - 2) // 6
        s.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, cin = [], 16
        for i, w in enumerate([16, 32, 64]):
            for j in range(n):
                layers.append(Block(cin, w, 2 if (i > 0 and j == 0) else 1)); cin = w
        s.layers = nn.Sequential(*layers)
        s.fc = nn.Linear(64, C)
    def forward(s, x):
        return s.fc(F.adaptive_avg_pool2d(s.layers(s.stem(x)), 1).flatten(1))

m = ResNet(depth, C)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
x = torch.randn(B, 3, 32, 32)
y1 = torch.randint(0, C, (B,)); perm = torch.randperm(B); lam = 0.7
def step():
    xm = lam * x + (1 - lam) * x[perm]
    out = m(xm)
    t = lam * F.one_hot(y1, C).float() + (1 - lam) * F.one_hot(y1[perm], C).float()
    if loss_kind == "icm":
        s = out @ t.T
        eye = torch.arange(B)
        loss = F.cross_entropy(s, eye) + F.cross_entropy(s.T, eye)
    else:
        loss = F.cross_entropy(out, t)
    opt.zero_grad(); loss.backward(); opt.step()
step()  # warm-up
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = (time.perf_counter() - t0) / steps
print(f"torch {torch.__version__} threads={torch.get_num_threads()} resnet{depth} B={B}: {dt*1000:.1f} ms/step, {B/dt:.1f} img/s")
