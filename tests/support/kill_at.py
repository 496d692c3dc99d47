"""Run ``pixie-backend reconstruct`` (or ``reconstruct-video``) and SIGKILL the process at one
point of one image's (or frame's) commit.

    python tests/support/kill_at.py POINT ITEM reconstruct ...

POINT: ``after_result`` (its result file is written, nothing else), ``after_obj`` (its first OBJ
is written too), ``during_status`` (half of its status record is on disk), ``after_status`` (its
record is complete, the files are not yet moved into the output folder), ``after_frame`` (a
sequence job's frame file is written into the staging folder, its record is not). ITEM: the
image's output name, or the frame's item (``frame_000012``). The kill is real (SIGKILL: no
cleanup, no ``finally``), so this is POSIX-only.
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    point, item, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    from pixie_backend.export import writer
    from pixie_backend.jobs import output

    if point == "after_result":
        original = writer.write_result

        def write_result(path, header, arrays):
            original(path, header, arrays)
            if path.name == f"{item}.pixie.npz":
                die()

        writer.write_result = write_result
    elif point == "after_obj":
        original = writer.write_obj

        def write_obj(path, *a, **kw):
            original(path, *a, **kw)
            if path.name.startswith(f"{item}_p"):
                die()

        writer.write_obj = write_obj
    elif point == "during_status":
        original = output.write_record

        def write_record(f, line):
            if f'"item": "{item}"' in line.decode() and '"status": "ok"' in line.decode():
                f.write(line[: len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            original(f, line)

        output.write_record = write_record
    elif point == "after_status":
        original = output.OutputFolder._publish

        def publish(self, staged, record, previous):
            if record["item"] == item:
                die()
            original(self, staged, record, previous)

        output.OutputFolder._publish = publish
    elif point == "after_frame":
        from pixie_backend.jobs import frame_record

        original = frame_record.FrameRecord.write

        def write(self, path):
            out = original(self, path)
            if frame_record.Path(path).name == f"{item}.npz":
                die()
            return out

        frame_record.FrameRecord.write = write
    else:
        raise SystemExit(f"unknown point {point}")
    from pixie_backend.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
