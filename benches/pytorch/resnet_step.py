"""Reference training-step throughput of a CIFAR ResNet in PyTorch, on the CPU or a GPU.

Usage: python benches/pytorch/resnet_step.py [depth=20] [batch=128] [steps=5] [classes=10] [loss=icm|ce]
       [--device cpu|cuda]
depth 6n+2 is a CIFAR ResNet (option A shortcuts), 18 is ResNet-18 in the form `icm` builds (3x3
stem, no max-pool, widths 64-512, 1x1 projection shortcuts), `mlp` the MLP 784-512-256-C on
1x28x28 inputs (`icm bench --model mlp --hidden 512,256 --input 1x28x28`). Prints images/second for a full SGD
step (forward, ICM or soft-label CE loss, backward, update); on cuda also the peak GPU memory.
PyTorch's defaults stand: fp32, with TF32 only where PyTorch enables it by default (cuDNN
convolutions).
"""
import sys, time
import torch, torch.nn as nn, torch.nn.functional as F

args = sys.argv[1:]
device = "cpu"
if "--device" in args:
    i = args.index("--device")
    device = args[i + 1]
    del args[i:i + 2]
depth = args[0] if len(args) > 0 else "20"
B = int(args[1]) if len(args) > 1 else 128
steps = int(args[2]) if len(args) > 2 else 5
C = int(args[3]) if len(args) > 3 else 10
loss_kind = args[4] if len(args) > 4 else "icm"
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

class BasicBlock(nn.Module):
    """ResNet-18's block: a 1x1 convolution + batch norm shortcut where the shape changes."""
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.short = nn.Sequential()
        if stride != 1 or cin != cout:
            s.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(s, x):
        r = F.relu(s.b1(s.c1(x)))
        return F.relu(s.b2(s.c2(r)) + s.short(x))

class ResNet18(nn.Module):
    def __init__(s, C):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for i, w in enumerate([64, 128, 256, 512]):
            for j in range(2):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1)); cin = w
        s.layers = nn.Sequential(*layers)
        s.fc = nn.Linear(512, C)
    def forward(s, x):
        return s.fc(F.adaptive_avg_pool2d(s.layers(s.stem(x)), 1).flatten(1))

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

if depth == "mlp":
    m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, C))
    x = torch.randn(B, 784)
else:
    m = ResNet18(C) if depth == "18" else ResNet(int(depth), C)
    x = torch.randn(B, 3, 32, 32)
m, x = m.to(device), x.to(device)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
y1 = torch.randint(0, C, (B,)).to(device); perm = torch.randperm(B).to(device); lam = 0.7
def step():
    xm = lam * x + (1 - lam) * x[perm]
    out = m(xm)
    t = lam * F.one_hot(y1, C).float() + (1 - lam) * F.one_hot(y1[perm], C).float()
    if loss_kind == "icm":
        s = out @ t.T
        eye = torch.arange(B, device=device)
        loss = F.cross_entropy(s, eye) + F.cross_entropy(s.T, eye)
    else:
        loss = F.cross_entropy(out, t)
    opt.zero_grad(); loss.backward(); opt.step()
def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
step()  # warm-up (on cuda: cuDNN picks its kernels)
step()
sync()
t0 = time.perf_counter()
for _ in range(steps):
    step()
sync()
dt = (time.perf_counter() - t0) / steps
where = f"threads={torch.get_num_threads()}"
if device.startswith("cuda"):
    where = f"{torch.cuda.get_device_name()}, peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
name = "mlp 784-512-256" if depth == "mlp" else f"resnet{depth}"
print(f"torch {torch.__version__} {device} ({where}) {name} B={B}: {dt*1000:.1f} ms/step, {B/dt:.1f} img/s")
