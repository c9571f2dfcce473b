import sys
src = open("experiments/021-gate-block/explore.py").read().split("for k in (16, 32, 64, 128, 256):")[0]
for f in sys.argv[1:]:
    sys.argv = ["x", f]
    print("==", f)
    exec(src)
    edges = np.cumsum([0, 80, 112, 192, 320])
    report("blocks 3-6 k=64 (current)", k=64)
    report("block 4 k=64 (candidate)", k=64, cols=slice(edges[1], edges[2]))
