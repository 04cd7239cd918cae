# Writes the broken-input corpus: `python3 tests/corpus/generate.py tests/corpus` (rewrites every case).
import os, struct, zlib, gzip, shutil, sys
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
for old in os.listdir(root):
    if os.path.isfile(os.path.join(root, old, 'expect')):
        shutil.rmtree(os.path.join(root, old))
BASE = """name: c
splits: [{per_class: 10}]
model: {arch: mlp, hidden: [16]}
train: {epochs: 2, batch_size: 16, lr: 0.05}
methods: [erm]
seeds: [0, 1]
"""
def case(name, experiment, expect, files=None):
    d = os.path.join(root, name)
    os.makedirs(d)
    mode = 'wb' if isinstance(experiment, bytes) else 'w'
    with open(os.path.join(d, 'experiment.yaml'), mode) as f:
        f.write(experiment)
    lines = []
    for line in expect.strip().split('\n'):
        own_file = ('experiment.yaml' in line or '/nonexistent' in line or 'data results' in line
                    or '.json' in line or line.startswith('command: bench'))
        if line.startswith('command: ') and not own_file:
            words = line.split()
            line = ' '.join(words[:2] + ['experiment.yaml'] + words[2:])
        lines.append(line)
    with open(os.path.join(d, 'expect'), 'w') as f:
        f.write('\n'.join(lines) + "\n")
    for path, content in (files or {}).items():
        p = os.path.join(d, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb' if isinstance(content, bytes) else 'w') as f:
            f.write(content)

def sub(old, new, text=BASE):
    assert old in text, old
    return text.replace(old, new)

# ---- experiment files
case('yaml-bom', b'\xef\xbb\xbf' + BASE.encode(), 'command: data\nstdout: per_class-10')
case('yaml-not-utf8', BASE.encode().replace(b'name: c', b'name: c\xff'), 'command: data\nerror: experiment.yaml:1:8: byte 7 (0xff) is not UTF-8 text')
case('yaml-binary-garbage', bytes(range(256)) * 4, 'command: data\nerror: experiment.yaml:2:118: byte 128 (0x80) is not UTF-8 text')
case('yaml-latin1', BASE.replace('name: c', 'name: caf\xe9').encode('latin-1'), 'command: data\nerror: experiment.yaml:1:10: byte 9 (0xe9) is not UTF-8 text')
case('yaml-empty', '', 'command: data\nerror: experiment.yaml: the file is empty')
case('yaml-top-level-list', '- name: c\n', 'command: data\nerror: experiment.yaml:1:1: invalid type: sequence, expected a map of settings (`key: value`)')
case('yaml-unclosed-flow-list', sub('splits: [{per_class: 10}]', 'splits:\n  - [balanced'), 'command: data\nerror: experiment.yaml:3:5: this `[` is never closed: add the missing `]`')
case('yaml-unclosed-flow-map', sub('model: {arch: mlp, hidden: [16]}', 'model: {arch: mlp, hidden: [16]'), 'command: data\nerror: experiment.yaml:3:8: this `{` is never closed: add the missing `}`')
case('yaml-balanced-with-params', sub('splits: [{per_class: 10}]', 'splits:\n  - balanced: {ratio: 10}'), 'command: data\nerror: experiment.yaml:3:15: splits[0].balanced: this entry takes no parameters (found `ratio`)')
case('yaml-digits-with-params', BASE + 'dataset: {digits: {root: /tmp}}\n', 'command: data\nerror: dataset.digits: this entry takes no parameters (found `root`)')
bomb = "x: &a [0, 0, 0, 0, 0, 0, 0, 0, 0]\n"
levels = 'abcdefghi'
lines = ['  - balanced:']
anchor_lines = ["      l0: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
for i in range(1, 9):
    prev = levels[i-1]; cur = levels[i]
    anchor_lines.append(f"      l{i}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
case('yaml-alias-bomb', sub('splits: [{per_class: 10}]', 'splits:\n  - balanced:\n' + '\n'.join(anchor_lines)), 'command: data\nerror: splits[0].balanced: this entry takes no parameters (found `l0`)')
case('yaml-alias-bomb-in-seeds', sub('seeds: [0, 1]', 'seeds: &s [0, 1]\nmethods_again: *s'), 'command: data\nerror: unknown field `methods_again`')
case('yaml-deep-nesting', sub('seeds: [0, 1]', 'seeds: ' + '[' * 5000 + ']' * 5000), 'command: data\nerror: experiment.yaml:6:9: seeds[0]: invalid type: sequence')
case('yaml-tab-indent', sub('train: {epochs: 2, batch_size: 16, lr: 0.05}', 'train:\n\tepochs: 2'), 'command: data\nerror: experiment.yaml:5:1: found character that cannot start any token')
case('yaml-duplicate-key', BASE + 'seeds: [3]\n', 'command: data\nerror: experiment.yaml:7:1: duplicate field `seeds`')
case('yaml-two-documents', BASE + '---\nname: d\n', 'command: data\nerror: experiment.yaml:7:1: a second YAML document starts here')
case('yaml-typo-key', sub('epochs: 2', 'epocs: 2'), 'command: data\nerror: did you mean `epochs`')
case('yaml-unknown-method', sub('methods: [erm]', 'methods: [ermm]'), 'command: data\nerror: experiment.yaml:5:11: methods[0]: unknown variant `ermm`')
case('yaml-milestones-beyond-epochs', sub('lr: 0.05}', 'lr: 0.05, schedule: multistep, milestones: [1, 5]}'), 'command: data\nerror: experiment.yaml: `train.milestones`: milestone 5 is never reached')
case('yaml-milestone-equal-epochs', sub('lr: 0.05}', 'lr: 0.05, schedule: multistep, milestones: [2]}'), 'command: data\nerror: `train.milestones`: milestone 2 is never reached')
case('yaml-validation-halves-classes', sub('splits: [{per_class: 10}]', 'splits: [{per_class: 2}]\nvalidation: 0.1'), 'command: data\nerror: split `per_class-2`: `validation: 0.1` would hold out 1 of the 2 training images of class 0, half or more')
case('yaml-validation-out-of-range', BASE + 'validation: 1.5\n', 'command: data\nerror: `validation`: the held-out share must be in (0, 1)')
case('yaml-validation-fine', sub('splits: [{per_class: 10}]', 'splits: [{per_class: 10}]\nvalidation: 0.2'), 'command: data\nstdout: validation')
case('yaml-hidden-u64-max', sub('hidden: [16]', 'hidden: [18446744073709551615]'), 'command: data\nerror: `model.hidden` [18446744073709551615]: the MLP needs about')
case('yaml-hidden-4e9', sub('hidden: [16]', 'hidden: [4000000000]'), 'command: run --quiet --no-report\nerror: `model.hidden` [4000000000]: the MLP needs about')
case('yaml-hidden-beyond-u64', sub('hidden: [16]', 'hidden: [18446744073709551616]'), 'command: data\nerror: experiment.yaml:3:29: model.hidden[0]: invalid type: integer `18446744073709551616`')
case('yaml-hidden-zero', sub('hidden: [16]', 'hidden: [0]'), 'command: data\nerror: `model`: hidden layer widths must be ≥ 1')
case('yaml-epochs-negative', sub('epochs: 2', 'epochs: -1'), 'command: data\nerror: experiment.yaml:4:17: train.epochs: invalid type: integer `-1`')
case('yaml-epochs-huge-float', sub('epochs: 2', 'epochs: 1e400'), 'command: data\nerror: experiment.yaml:4:17: train.epochs: invalid type: string "1e400"')
case('yaml-lr-nan', sub('lr: 0.05', 'lr: .nan'), 'command: data\nerror: experiment.yaml: `train.lr`: learning rate must be > 0 and finite, got NaN')
case('yaml-batch-zero', sub('batch_size: 16', 'batch_size: 0'), 'command: data\nerror: `train.batch_size`: must be ≥ 1')
case('yaml-no-seeds', sub('seeds: [0, 1]', 'seeds: []'), 'command: data\nerror: experiment.yaml: `seeds`: list at least one training seed')
case('yaml-split-twice', sub('splits: [{per_class: 10}]', 'splits: [{per_class: 10}, {per_class: 10}]'), 'command: data\nerror: `splits[1]`: split `per_class-10` is listed twice')
case('yaml-name-slash', sub('name: c', 'name: ../c'), 'command: data\nerror: `name`: `../c` is not a usable folder name')
case('yaml-long-tailed-ratio-below-one', sub('splits: [{per_class: 10}]', 'splits: [{long_tailed: {ratio: 0.5}}]'), 'command: data\nerror: `splits[0].long_tailed.ratio`: imbalance ratio must be ≥ 1')
# sweeps and --set overrides
case('yaml-sweep-fine', BASE + 'sweep: {train.lr: [0.05, 0.1]}\n', 'command: data\nstdout: sweep point train.lr=0.1:')
case('yaml-sweep-grid-axis', BASE + 'sweep: {seeds: [[0], [1]]}\n', 'command: data\nerror: experiment.yaml: `sweep.seeds`: `seeds` cannot be swept: it is already an axis of the grid')
case('yaml-sweep-typo-key', BASE + 'sweep: {train.lrr: [0.05, 0.1]}\n', 'command: data\nerror: experiment.yaml: `sweep.train.lrr`: value 0.05: unknown field `lrr`\nerror: did you mean `train.lr`')
case('yaml-sweep-not-a-list', BASE + 'sweep: {train.lr: 0.1}\n', 'command: data\nerror: `sweep.train.lr`: give a list of values')
case('yaml-sweep-zip-lengths', BASE + 'sweep: {zip: {train.lr: [0.05, 0.1], train.epochs: [1, 2, 3]}}\n', 'command: data\nerror: `sweep.zip`: the lists of a zip block advance together and must have the same length')
case('yaml-sweep-bad-value', BASE + 'sweep: {train.batch_size: [16, 0]}\n', 'command: data\nerror: `train.batch_size`: must be ≥ 1 (from `sweep: train.batch_size: 0`)')
case('yaml-sweep-point-data', sub('splits: [{per_class: 10}]', 'splits: [{per_class: 2}]') + 'sweep: {validation: [null, 0.1]}\n', 'command: run --quiet --no-report\nerror: would hold out 1 of the 2 training images of class 0, half or more\nerror: (in the sweep point validation=0.1)')
case('set-bad-value', BASE, 'command: data experiment.yaml --set train.lr=abc\nerror: experiment.yaml: --set train.lr=abc: invalid type: string "abc", expected f64')
case('set-typo-key', BASE, 'command: data experiment.yaml --set trian.lr=0.1\nerror: --set trian.lr=0.1: unknown field `trian`\nerror: did you mean `train.lr`')
case('set-no-value', BASE, 'command: data experiment.yaml --set train.lr\nerror: --set train.lr: expected key=value')
case('set-swept-key', BASE + 'sweep: {train.lr: [0.05, 0.1]}\n', 'command: data experiment.yaml --set train.lr=0.2\nerror: --set train.lr=0.2: `train.lr` is swept')
case('run-jobs-zero', BASE, 'command: run --jobs 0\nerror: --jobs <JOBS>\': must be at least 1')
case('run-threads-zero', BASE, 'command: run --threads 0\nerror: --threads <THREADS>\': must be at least 1')
case('run-checkpoint-every-zero', BASE, 'command: run --checkpoint-every 0\nerror: must be at least 1')
case('run-lock-timeout-below-heartbeat', BASE, 'command: run --lock-timeout 5\nerror: --lock-timeout 5: must be at least 60 s')
case('run-jobs-absurd', BASE, 'command: run --quiet --no-report --jobs 100000\nstdout: 2 trained')
case('run-results-is-a-file', BASE, 'command: run experiment.yaml --results experiment.yaml\nerror: --results experiment.yaml: this is a file, not a folder')
case('report-missing-folder', BASE, 'command: report /nonexistent/dir\nerror: icm report /nonexistent/dir: no such file or folder')
case('yaml-batch-above-the-split', sub('batch_size: 16', 'batch_size: 500'), 'command: data\nstdout: `train.batch_size` 500 is more than these 100 images: each epoch is one batch of 100')
case('yaml-merge-key', sub('train: {epochs: 2, batch_size: 16, lr: 0.05}', 'train:\n  <<: {epochs: 2, batch_size: 16}\n  lr: 0.05'), 'command: data\nerror: YAML merge keys (`<<: *anchor`) are not supported; write the keys out')
case('yaml-name-dots', sub('name: c', 'name: ".."'), 'command: data\nerror: `name`: `..` is not a usable folder name')
case('yaml-name-too-long', sub('name: c', 'name: ' + 'a' * 101), 'command: data\nerror: `name`: `' + 'a' * 101 + '` is 101 characters long; use at most 100')
case('yaml-train-null', sub('train: {epochs: 2, batch_size: 16, lr: 0.05}', 'train: ~'), 'command: data\nerror: train: invalid type: unit value, expected a map of settings (`key: value`)')
case('yaml-table-precision-huge', BASE + 'tables: [{name: x, metric: accuracy, precision: 65536}]\n', 'command: data\nerror: `tables[0]`: precision 65536 is more decimals than a table can show; use 0 to 12')
case('yaml-corruption-alias-twice', BASE + 'evaluate: {corruptions: [blur, gaussian_blur], severities: [1]}\n', 'command: data\nerror: `evaluate.corruptions[1]`: `gaussian_blur` is listed twice')
case('yaml-severity-twice', BASE + 'evaluate: {corruptions: [rotate], severities: [1, 1]}\n', 'command: data\nerror: `evaluate.severities[1]`: severity 1 is listed twice')
case('yaml-ood-metric-without-ood', BASE + 'tables: [{name: t, metric: ood_auroc}]\n', 'command: data\nerror: `tables[0].metric`: `ood_auroc` needs out-of-distribution sets: add an `ood:` section')
case('yaml-corruption-metric-of-ood-set', BASE + 'ood: {sets: {noise: uniform_noise}}\ntables: [{name: t, metric: corruption_accuracy@noise}]\n', 'command: data\nerror: `tables[0].metric`: `corruption_accuracy@noise` needs corrupted test sets: add an `evaluate:` section')
case('yaml-warmup-longer-than-run', sub('methods: [erm]', 'methods: [{mixup: {warmup_epochs: 5}}]'), 'command: data\nerror: `methods[0] (mixup).warmup_epochs`: a warm-up of 5 epochs is longer than the run\'s 2 (`train.epochs`)')
case('yaml-held-out-all-but-one', BASE + 'ood: {held_out_classes: [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n', 'command: data\nerror: 9 of the 10 classes are held out: keep at least two for training')
case('yaml-crop-padding-whole-image', sub('lr: 0.05}', 'lr: 0.05, augment: {crop_padding: 8, flip: false}}'), 'command: data\nerror: `train.augment.crop_padding` 8 is not smaller than the 8×8 images')
case('bench-classes-zero', BASE, 'command: bench --classes 0 --hidden 8 --input 1x8x8 --batch 4 --steps 1 --warmup 0\nerror: --classes must be ≥ 2, got 0')
case('bench-hidden-zero', BASE, 'command: bench --hidden 0 --input 1x8x8 --batch 4 --steps 1 --warmup 0\nerror: --hidden: hidden layer widths must be ≥ 1, got [0]')
case('bench-batch-huge', BASE, 'command: bench --hidden 8 --input 3x32x32 --batch 1000000000 --steps 1 --warmup 0\nerror: --batch 1000000000 is more than 65536')
case('bench-input-huge', BASE, 'command: bench --hidden 8 --input 100000x100000x100000 --batch 4 --steps 1\nerror: --input `100000x100000x100000`: an image of more than 16777216 values')
case('bench-steps-zero', BASE, 'command: bench --hidden 8 --input 1x8x8 --batch 4 --steps 0\nerror: --steps must be ≥ 1')
case('bench-against-typo', BASE, 'command: bench --hidden 8 --input 1x8x8 --batch 4 --steps 1 --warmup 0 --against mixpu\nerror: --against `mixpu`')
case('slurm-time-garbage', BASE, 'command: slurm --time banana\nerror: --time `banana`: not a Slurm time')
case('slurm-cpus-zero', BASE, 'command: slurm --cpus 0\nerror: --cpus must be ≥ 1')
case('report-format-none', BASE, 'command: report --format ,\nerror: --format `,` names no format')
case('report-run-record', BASE, 'command: report results/c/0123456789abcdef/metrics.json\nerror: this is one run\'s record; give the experiment file or the folder of runs it lies in (e.g. results/c)', files={'results/c/0123456789abcdef/metrics.json': '{}'})
case('experiment-is-a-folder', BASE, 'command: data results\nerror: results is a folder, not an experiment file', files={'results/x': ''})

# ---- idx
IDX = sub('model: {arch: mlp, hidden: [16]}', 'model: {arch: mlp, hidden: [16]}\ndataset: {idx: {root: idx}}', sub('splits: [{per_class: 10}]', 'splits: [balanced]'))
def images(n, h, w, magic=0x803):
    return struct.pack('>IIII', magic, n, h, w) + bytes(n*h*w)
def labels(ys, magic=0x801):
    return struct.pack('>II', magic, len(ys)) + bytes(ys)
good = {'idx/train-images-idx3-ubyte': images(4, 2, 2), 'idx/train-labels-idx1-ubyte': labels([0,1,0,1]),
        'idx/t10k-images-idx3-ubyte': images(2, 2, 2), 'idx/t10k-labels-idx1-ubyte': labels([0,1])}
def idx_case(name, change, err):
    files = dict(good); files.update(change)
    files = {k: v for k, v in files.items() if v is not None}
    case(name, IDX, 'command: data\nerror: ' + err, files=files)
idx_case('idx-missing-folder', {k: None for k in good}, 'idx dataset folder idx does not exist')
idx_case('idx-missing-test-labels', {'idx/t10k-labels-idx1-ubyte': None}, 'has no `t10k-labels-idx1-ubyte`')
idx_case('idx-bad-magic', {'idx/train-images-idx3-ubyte': images(4, 2, 2, magic=0x1234)}, 'train-images-idx3-ubyte: bad idx magic 0x00001234 at byte 0')
idx_case('idx-truncated-header', {'idx/train-images-idx3-ubyte': images(4, 2, 2)[:10]}, 'train-images-idx3-ubyte is truncated: header ends at byte 10')
idx_case('idx-wrong-size', {'idx/train-images-idx3-ubyte': images(4, 2, 2)[:-3]}, 'train-images-idx3-ubyte: 4 images of 2×2 need 32 bytes, the file has 29')
idx_case('idx-overflowing-header', {'idx/train-images-idx3-ubyte': struct.pack('>IIII', 0x803, 0xffffffff, 0xffffffff, 0xffffffff)}, 'idx/train-images-idx3-ubyte: header sizes 4294967295×4294967295×4294967295 overflow')
idx_case('idx-zero-size-images', {'idx/train-images-idx3-ubyte': images(4, 0, 2)}, 'images of 0×2 pixels')
idx_case('idx-bad-gzip', {'idx/train-images-idx3-ubyte': None, 'idx/train-images-idx3-ubyte.gz': b'not gzip at all'}, 'train-images-idx3-ubyte.gz is not a valid gzip file')
idx_case('idx-count-mismatch', {'idx/train-labels-idx1-ubyte': labels([0,1,0])}, 'idx/train-labels-idx1-ubyte has 3 labels but idx/train-images-idx3-ubyte has 4 images')
idx_case('idx-labels-as-images', {'idx/train-labels-idx1-ubyte': images(4, 2, 2)}, 'idx/train-labels-idx1-ubyte: bad idx magic 0x00000803 at byte 0 (labels need 0x00000801)')
idx_case('idx-images-shape-differs', {'idx/t10k-images-idx3-ubyte': images(2, 3, 3)}, 'training images are 2×2 but test images are 3×3')

# ---- CIFAR-10
CIF = sub('model: {arch: mlp, hidden: [16]}', 'model: {arch: mlp, hidden: [16]}\ndataset: {cifar10: {root: cifar}}', sub('splits: [{per_class: 10}]', 'splits: [balanced]'))
rec = lambda y: bytes([y]) + bytes(3072)
case('cifar-missing-root', CIF, 'command: data\nerror: dataset `cifar10`: missing cifar/data_batch_1.bin')
case('cifar-truncated-batch', CIF, 'command: data\nerror: data_batch_1.bin: 4000 bytes is not a whole number of 3073-byte records', files={'cifar/cifar-10-batches-bin/data_batch_1.bin': (rec(0)+rec(1))[:4000]})
case('cifar-empty-batch', CIF, 'command: data\nerror: data_batch_1.bin: 0 bytes is not a whole number', files={'cifar/cifar-10-batches-bin/data_batch_1.bin': b''})
case('cifar-label-out-of-range', CIF, 'command: data\nerror: data_batch_1.bin: label 12 at byte 3073 is out of range (0..10)', files={'cifar/cifar-10-batches-bin/data_batch_1.bin': rec(0)+rec(12)})
case('cifar-missing-test-batch', CIF, 'command: data\nerror: missing cifar/cifar-10-batches-bin/test_batch.bin', files={f'cifar/cifar-10-batches-bin/data_batch_{i}.bin': rec(0)+rec(1) for i in range(1, 6)})

# ---- image folders
def png(w, h, rgb):
    raw = b''.join(b'\x00' + bytes(rgb) * w for _ in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
FOLD = sub('model: {arch: mlp, hidden: [16]}', 'model: {arch: mlp, hidden: [16]}\ndataset: {folder: {root: imgs, size: 4}}', sub('splits: [{per_class: 10}]', 'splits: [balanced]'))
imgs = {f'imgs/{c}/{i}.png': png(4, 4, (i*40, 10, 200 if c == "cat" else 20)) for c in ('cat', 'dog') for i in range(3)}
def fold_case(name, change, expect):
    files = dict(imgs); files.update(change)
    files = {k: v for k, v in files.items() if v is not None}
    case(name, FOLD, expect, files=files)
fold_case('folder-fine', {}, 'command: data\nstdout: dataset folder')
fold_case('folder-trainval-without-test', {'imgs/splits/trainval.txt': 'cat/0.png 0\ndog/0.png 1\n'}, 'command: data\nerror: splits/trainval.txt exists but imgs/splits/test.txt does not: give both split files, or neither')
fold_case('folder-test-without-trainval', {'imgs/splits/test.txt': 'cat/0.png 0\n'}, 'command: data\nerror: splits/test.txt exists but imgs/splits/trainval.txt does not')
fold_case('folder-image-in-train-and-test', {'imgs/splits/trainval.txt': 'cat/0.png 0\ndog/0.png 1\ncat/1.png 0\n', 'imgs/splits/test.txt': 'cat/1.png 0\ndog/1.png 1\n'}, 'command: data\nerror: both list 1 image(s), e.g. imgs/cat/1.png: an image must be in one of them only')
fold_case('folder-split-line-malformed', {'imgs/splits/trainval.txt': 'cat/0.png zero\n', 'imgs/splits/test.txt': 'cat/1.png 0\n'}, 'command: data\nerror: trainval.txt:1: expected `relative/path label`, got `cat/0.png zero`')
fold_case('folder-split-names-missing-image', {'imgs/splits/trainval.txt': 'cat/9.png 0\ndog/0.png 1\n', 'imgs/splits/test.txt': 'cat/1.png 0\ndog/1.png 1\n'}, 'command: data\nerror: cannot decode image imgs/cat/9.png: No such file or directory')
fold_case('folder-one-class', {k: None for k in imgs if k.startswith('imgs/dog')}, 'command: data\nerror: must hold one sub-folder of images per class (at least 2)')
fold_case('folder-class-without-images', {k: None for k in imgs if k.startswith('imgs/dog')} | {'imgs/dog/readme.txt': 'x'}, 'command: data\nerror: class folder imgs/dog has no .png/.jpg images')
fold_case('folder-garbage-png', {'imgs/cat/1.png': b'\x89PNG garbage'}, 'command: data\nerror: cannot decode image imgs/cat/1.png')
fold_case('folder-class-of-one-image', {'imgs/dog/1.png': None, 'imgs/dog/2.png': None}, 'command: data\nerror: has 1 image(s); it needs at least 2')

# ---- damaged results folders
RES = BASE
def res_case(name, file, content, expect):
    files = {'bad': content} if content is not None else {}
    with_ = 'bad' if content is not None else 'delete'
    case(name, RES, f'setup: run\ndamage: {file} {with_}\n' + expect, files=files)
RUN_AGAIN = 'command: run --quiet --no-report\nstdout: 1 trained (0 resumed), 1 skipped\nstderr: retraining'
res_case('results-metrics-truncated', 'metrics.json', '{"run_id": "', RUN_AGAIN)
res_case('results-metrics-empty', 'metrics.json', '', RUN_AGAIN)
res_case('results-metrics-empty-object', 'metrics.json', '{}', RUN_AGAIN)
res_case('results-metrics-nan', 'metrics.json', '{"accuracy": NaN}', RUN_AGAIN)
res_case('results-metrics-binary', 'metrics.json', bytes(range(256)), RUN_AGAIN)
res_case('results-config-garbage', 'config.yaml', '\x00\x01 garbage: [', RUN_AGAIN)
res_case('results-metrics-status', 'metrics.json', '{}', 'command: status\nstdout: 1 pending\nstdout: to train again')
case('results-lock-garbage', RES, 'setup: run\ndamage: metrics.json delete\ndamage: lock.json bad\ncommand: status\nstdout: 1 done\nstdout:     0 running\nstdout: 1 pending', files={'bad': 'garbage'})
res_case('results-history-garbage', 'history.csv', 'garbage\x00', 'command: report experiment.yaml\nfile: reports/c/table.md not aggregated')
res_case('results-reliability-garbage', 'reliability.json', '{"ece": ', 'command: report experiment.yaml\nfile: reports/c/table.md reliability.json is not a valid reliability file')
res_case('results-predictions-missing', 'predictions.csv', None, 'command: report experiment.yaml\nfile: reports/c/table.md predictions.csv')
HEADER = 'epoch,lr,train_loss,test_accuracy,val_accuracy,grad_norm,max_grad_norm,max_logit,max_score,duplicates\n'
res_case('results-history-header-only', 'history.csv', HEADER, 'command: report experiment.yaml\nfile: reports/c/table.md history.csv: no epochs after the header')
res_case('results-reliability-miscounted', 'reliability.json', '{"ece": 0.1, "bins": [{"lower": 0.0, "upper": 1.0, "count": 5, "confidence": 0.5, "accuracy": 0.5}]}', 'command: report experiment.yaml\nfile: reports/c/table.md the bins count 5 images, but metrics.json says 360 test images')
res_case('results-reliability-out-of-range', 'reliability.json', '{"ece": 0.1, "bins": [{"lower": 0.0, "upper": 1.0, "count": 360, "confidence": 0.5, "accuracy": 7}]}', 'command: report experiment.yaml\nfile: reports/c/table.md bin 0: edges [0, 1], confidence 0.5, accuracy 7')
res_case('results-predictions-one-row', 'predictions.csv', 'label,predicted,confidence\n0,0,0.9\n', 'command: report experiment.yaml\nfile: reports/c/table.md predictions.csv: 1 predictions, but metrics.json says 360 test images')
res_case('results-config-missing', 'config.yaml', None, 'command: report experiment.yaml\nfile: reports/c/table.md has no config.yaml')
def npy(descr, shape, body):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += ' ' * (63 - (10 + len(header)) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode() + body
case('results-logits-of-another-test-set', RES, 'setup: run\ndamage: logits.npy l\ndamage: labels.npy y\ncommand: report experiment.yaml --recompute\nfile: reports/c/table.md logits of 1 images × 10 classes, but metrics.json says 360 test images of 10 classes', files={'l': npy('<f4', '(1, 10)', bytes(40)), 'y': npy('<i8', '(1,)', bytes(8))})
res_case('results-logits-overflowing-shape', 'logits.npy', npy('<f4', '(9223372036854775809, 2)', bytes(8)), 'command: report experiment.yaml --recompute\nfile: reports/c/table.md is larger than memory')
case('results-of-another-version', RES, 'setup: run\ncommand: report --set train.lr=0.1\nerror: no finished runs of this grid (2 run folders there belong to another version of the file or other `--set` values: `icm runs` shows how they differ)')
case('results-failure-not-utf8', RES, 'setup: run\ndamage: metrics.json delete\ndamage: failure.txt bad\ncommand: status\nstdout: 1 failed', files={'bad': b'out of memory \xff\xfe'})
res_case('results-predictions-garbage', 'predictions.csv', 'label,predicted,confidence\n1,x\n', 'command: report experiment.yaml\nfile: reports/c/table.md predictions.csv line 2')
