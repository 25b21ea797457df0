"""Peak memory of one decode worker on a long 4K video, this tree against an older commit, in one run.

Writes a 10-minute 3840x2160 video (a key frame every second, smooth moving content so the file stays small),
then decodes it in a fresh process per tree exactly as an index worker does (`decode_file`, the default sampling:
a key frame per 2 s, at most 300) and prints each process's peak RSS.

    python bench/video_memory.py [--minutes 10] [--baseline d0a4173]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from baseline import checked_out  # bench/, the folder of this script

ROOT = Path(__file__).resolve().parent.parent

DECODE = """
import resource, sys, time
sys.path.insert(0, sys.argv[1])
from imgsearch.images.decode import Geometry, decode_file
t0 = time.perf_counter()
d = decode_file(sys.argv[2], Geometry(224, 224), 10**9)
print(len(d.times_ms), round(time.perf_counter() - t0, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def write_video(path: Path, minutes: float, width: int = 3840, height: int = 2160) -> None:
    import av

    fps = 1
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 1
        stream.bit_rate = 4_000_000
        for n in range(int(minutes * 60 * fps)):
            frame = np.stack([(xx + 7 * n) % 256, (yy + 3 * n) % 256, ((xx + yy) // 8 + n) % 256], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def peak(tree: Path, video: Path) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", DECODE, str(tree), str(video)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--baseline", default="d0a4173", help="the commit to compare with (frames kept at full size)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "long-4k.mp4"
        write_video(video, args.minutes)
        with checked_out(args.baseline, work / "baseline") as baseline:
            print(f"{args.minutes:g} min 3840x2160 video, {video.stat().st_size / 1e6:.0f} MB")
            before = peak(baseline, video)
            after = peak(ROOT, video)
            for name, (frames, seconds, rss) in (("baseline " + args.baseline, before), ("this tree", after)):
                print(f"{name:<20} {frames} key frames kept, {seconds:6.1f} s, peak RSS {rss:6d} MB")
            print(f"peak RSS ratio (this tree / baseline): {after[2] / before[2]:.3f}")


if __name__ == "__main__":
    main()
