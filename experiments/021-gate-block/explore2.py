import sys
sys.argv = sys.argv[:2]
exec(open("experiments/021-gate-block/explore.py").read().split("for k in (16, 32, 64, 128, 256):")[0])
edges = np.cumsum([0, 80, 112, 192, 320])
for k in (32, 64, 96, 128):
    report(f"block 4 k={k}", k=k, cols=slice(edges[1], edges[2]))
report("blocks 3+4 k=64", k=64, cols=slice(edges[0], edges[2]))
report("blocks 4+5 k=64", k=64, cols=slice(edges[1], edges[3]))
report("blocks 3+4 k=128", k=128, cols=slice(edges[0], edges[2]))
