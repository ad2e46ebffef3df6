"""Write tiny Pascal VOC devkit trees for the tests: hand-made XML in the devkit's layout,
with the extra elements real files carry (source, owner, pose, segmented, part)."""

from __future__ import annotations

from pathlib import Path


def obj(name, box, difficult=False, truncated=False, actions=None, part=False):
    """One <object>. ``actions``: the set of actions flagged 1 (all others written as 0)."""
    x1, y1, x2, y2 = box
    lines = ["\t<object>", f"\t\t<name>{name}</name>", "\t\t<pose>Left</pose>",
             f"\t\t<truncated>{int(truncated)}</truncated>", f"\t\t<difficult>{int(difficult)}</difficult>",
             f"\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n"
             f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>"]
    if part:
        lines.append("\t\t<part>\n\t\t\t<name>head</name>\n\t\t\t<bndbox><xmin>2</xmin><ymin>2</ymin>"
                     "<xmax>4</xmax><ymax>4</ymax></bndbox>\n\t\t</part>")
    if actions is not None:
        from minicnn.data.voc import VOC_ACTIONS
        lines.append("\t\t<actions>" + "".join(f"<{a}>{int(a in actions)}</{a}>" for a in VOC_ACTIONS)
                     + "</actions>")
    lines.append("\t</object>")
    return "\n".join(lines)


def annotation_xml(image_id, objects, width=100, height=80):
    return "\n".join([
        "<annotation>", "\t<folder>VOC2007</folder>", f"\t<filename>{image_id}.jpg</filename>",
        "\t<source>\n\t\t<database>The VOC2007 Database</database>"
        "\n\t\t<annotation>PASCAL VOC2007</annotation>"
        "\n\t\t<image>flickr</image>\n\t\t<flickrid>123</flickrid>\n\t</source>",
        "\t<owner>\n\t\t<flickrid>someone</flickrid>\n\t\t<name>?</name>\n\t</owner>",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>0</segmented>", *objects, "</annotation>", ""])


def write_voc(root, annotations, split="test", year=2007, action_split=None):
    """Write ``root/VOC<year>/``: one XML per image of ``annotations`` ({id: [obj(...)]}), the
    Main set ``split`` listing them in dict order, and, with ``action_split``, the Action set
    of that name listing the images that carry persons with actions. Returns the VOC folder."""
    voc = Path(root) / f"VOC{year}"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Action"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for image_id, objects in annotations.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, objects))
    (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in annotations))
    if action_split:
        ids = [i for i, objects in annotations.items() if any("<actions>" in o for o in objects)]
        (voc / "ImageSets" / "Action" / f"{action_split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def write_lines(path, lines):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
