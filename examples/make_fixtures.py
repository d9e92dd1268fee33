"""Writes the inputs of dbr_example.c into a folder: photos.zip (JPEGs made
by Pillow) and labels.tfrecord (Examples with "label" and "name"), and prints
the expected sum of labels."""
import io
import os
import sys
import zipfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dareblopy as db  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for i, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        img = Image.new("RGB", (64, 48), color)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95)
        z.writestr(f"photo{i}.jpg", buf.getvalue())
labels = [3, 1, 4, 1, 5, 9, 2, 6]
with db.TFRecordWriter(os.path.join(out, "labels.tfrecord")) as w:
    for i, label in enumerate(labels):
        w.write(db.serialize_example({"label": label, "name": f"record{i}"}))
print(sum(labels))
