#!/bin/sh
# Writes tests/data/vfr_30_then_15fps.mp4: FFmpeg's 64x48 test pattern, its first 30
# frames 1/30 s apart and the next 30 frames 1/15 s apart (a variable-frame-rate clip).
# A 1/90000 time base keeps those times exact; MPEG-4 part 2 without B-frames keeps
# the encoder from moving them.
set -e
ffmpeg -loglevel error -y -f lavfi -i testsrc=size=64x48:rate=30:duration=2 \
    -vf "settb=1/90000,setpts='(N/30+if(gte(N,30),(N-30)/30,0))/TB'" -fps_mode passthrough \
    -c:v mpeg4 -bf 0 -pix_fmt yuv420p -video_track_timescale 90000 \
    "$(dirname "$0")/../tests/data/vfr_30_then_15fps.mp4"
