"""`minicnn source-classes` and `pretrain --classes` (issue 17, item 2): the classes of an
ImageNet-style folder under WordNet synsets (hypernym closure through @ and @i), a random
selection of the same size, and source training restricted to a class list."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.data.folders import read_class_list
from minicnn.data.wordnet import classes_under, random_classes, read_data_noun
from minicnn.errors import InputError

LICENCE = """  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.  By obtaining, using
  3 and/or copying this software and database, you agree that you have
  4 read, understood, and will comply with these terms and conditions.:
"""

# A hand-made hierarchy (offsets are made up; the layout is data.noun's):
#   entity 00001740
#     furniture 03405725          chair 03001627 @ furniture      armchair 02738535 @ chair
#                                 table 04379243 @ furniture
#     seat 04161981
#     ungulate 02370806           horse 02374451 @ ungulate
#     hippo_sofa 09999991 @ seat and @ ungulate (two hypernyms)
#     person 00007846             einstein 10000001 @i person (an instance hypernym)
# ~ (hyponym), #m (member holonym) and pointers to verbs must not count as hypernyms.
SYNSETS = [
    "00001740 03 n 01 entity 0 003 ~ 03405725 n 0000 ~ 04161981 n 0000 ~ 02370806 n 0000 | that which exists",
    "03405725 06 n 03 furniture 0 piece_of_furniture 0 article_of_furniture 0 003 @ 00001740 n 0000 "
    "~ 03001627 n 0000 ~ 04379243 n 0000 | furnishings that make a room ready for occupancy",
    "03001627 06 n 01 chair 0 003 @ 03405725 n 0000 ~ 02738535 n 0000 + 01984317 v 0101 | a seat for one "
    "person | with a back",
    "02738535 06 n 01 armchair 0 001 @ 03001627 n 0000 | chair with arms",
    "04379243 06 n 01 table 0 002 @ 03405725 n 0000 #m 02370806 n 0000 | a piece of furniture",
    "04161981 06 n 01 seat 0 002 @ 00001740 n 0000 ~ 09999991 n 0000 | furniture for sitting",
    "02370806 05 n 02 ungulate 0 hoofed_mammal 0 003 @ 00001740 n 0000 ~ 02374451 n 0000 "
    "~ 09999991 n 0000 | any of a number of mammals with hooves",
    "02374451 05 n 01 horse 0 001 @ 02370806 n 0000 | solid-hoofed herbivorous quadruped",
    "09999991 05 n 01 hippo_sofa 0 002 @ 04161981 n 0000 @ 02370806 n 0000 | made up: two hypernyms",
    "00007846 03 n 0b person 0 individual 0 someone 0 somebody 0 mortal 0 soul 0 human 0 being 0 "
    "creature 0 personage 0 wight 0 002 @ 00001740 n 0000 ~ 10000001 n 0000 | a human being",
    "10000001 18 n 01 Einstein 0 001 @i 00007846 n 0000 | physicist",
]

FURNITURE, UNGULATE, SEAT, PERSON = "n03405725", "n02370806", "n04161981", "n00007846"


def write_noun(path, lines=SYNSETS):
    path = Path(path)
    path.write_text(LICENCE + "".join(f"{line}  \n" for line in lines))
    return path


def class_root(root, names=("n03001627", "n02738535", "n04379243", "n02374451", "n09999991", "n10000001",
                             "n00001740", "n99999999", "junk")):
    for name in names:
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
    return Path(root)


def test_hypernym_closure_through_at_and_at_i(tmp_path):
    wn = read_data_noun(write_noun(tmp_path / "data.noun"))
    assert wn.words["n03405725"] == ("furniture", "piece_of_furniture", "article_of_furniture")
    assert len(wn.words[PERSON]) == 11                     # w_cnt 0b is hexadecimal
    assert wn.hypernyms["n03001627"] == ("n03405725",)     # ~, + (a verb) are not hypernyms
    assert wn.hypernyms["n04379243"] == ("n03405725",)     # #m is not one either
    assert wn.hypernyms["n09999991"] == ("n04161981", "n02370806")
    assert wn.ancestors("n02738535") == {"n02738535", "n03001627", "n03405725", "n00001740"}
    assert wn.ancestors("n10000001") == {"n10000001", PERSON, "n00001740"}
    classes = sorted(p.name for p in class_root(tmp_path / "root").iterdir())
    chosen, per = classes_under(wn, classes, [FURNITURE, UNGULATE, PERSON])
    assert per == {FURNITURE: ["n02738535", "n03001627", "n04379243"],
                   UNGULATE: ["n02374451", "n09999991"], PERSON: ["n10000001"]}
    assert chosen == ["n02374451", "n02738535", "n03001627", "n04379243", "n09999991", "n10000001"]
    # a synset counts as under itself; two hypernyms: under both
    assert classes_under(wn, classes, ["n03001627"])[0] == ["n02738535", "n03001627"]
    assert classes_under(wn, classes, [SEAT])[0] == ["n09999991"]
    with pytest.raises(InputError, match="--under n12345678: no such synset"):
        classes_under(wn, classes, ["n12345678"])
    with pytest.raises(InputError, match="n \\+ 8 digits"):
        classes_under(wn, classes, ["chair"])


@pytest.mark.parametrize("line, message", [
    ("02738535 06 n 01 armchair 0 002 @ 03001627 n 0000 | two pointers announced, one given",
     r"data.noun, line 6: 2 pointers announced"),
    ("02738535 06 n 04 armchair 0 001 @ 03001627 n 0000 | four words announced",
     r"data.noun, line 6: 4 words announced, the line has fewer"),
    ("02738535 06 n 01 armchair 0 ab1 @ 03001627 n 0000 | a bad pointer count",
     r"data.noun, line 6: pointer count 'ab1' \(after 1 words\) is not a number"),
    ("2738535 06 n 01 armchair 0 001 @ 03001627 n 0000 | seven digits", r"line 6: synset offset '2738535'"),
    ("02738535 06 n zz armchair 0 001 @ 03001627 n 0000 | bad count", r"line 6: word count 'zz' is not hex"),
    ("02738535 06 n 01 armchair 0 001 @ 3001627 n 0000 | bad pointer", r"line 6: pointer 1 names offset"),
])
def test_malformed_data_lines_name_the_line(tmp_path, line, message):
    lines = list(SYNSETS)
    lines[1] = line  # the second synset: line 6, after 4 lines of licence
    with pytest.raises(InputError, match=message):
        read_data_noun(write_noun(tmp_path / "data.noun", lines))


def test_command_lists_prints_and_writes_a_class_list(tmp_path, capsys):
    noun, root = write_noun(tmp_path / "data.noun"), class_root(tmp_path / "root")
    out = tmp_path / "chosen.txt"
    assert main(["source-classes", "--wordnet", str(noun), "--from", str(root), "--under", FURNITURE,
                 UNGULATE, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "n03405725 (furniture, piece_of_furniture, article_of_furniture): 3 classes" in printed
    assert "n02370806 (ungulate, hoofed_mammal): 2 classes" in printed
    assert f"total: 5 of the 9 classes of {root} lie under the 2 synsets" in printed
    assert "warning: 2 of the 9 class folders are not WordNet noun synsets" in printed
    assert read_class_list(out) == ["n02374451", "n02738535", "n03001627", "n04379243", "n09999991"]
    # --random same: as many classes as the --under selection, chosen from all of ROOT by the seed
    picks = []
    for seed in (1, 1, 2):
        assert main(["source-classes", "--wordnet", str(noun), "--from", str(root), "--under", FURNITURE,
                     UNGULATE, "--random", "same", "--seed", str(seed), "--out", str(out)]) == 0
        picks.append(read_class_list(out))
    assert picks[0] == picks[1] == sorted(picks[0]) and len(picks[0]) == 5
    assert set(picks[0]) <= {p.name for p in root.iterdir()}
    assert picks[2] != picks[0]
    nine = [f"c{i}" for i in range(9)]
    assert random_classes(nine, 3, 1) == random_classes(nine[::-1], 3, 1)   # whatever order they come in
    capsys.readouterr()
    assert main(["source-classes", "--from", str(root), "--random", "3", "--out", str(out)]) == 0
    assert len(read_class_list(out)) == 3


@pytest.mark.parametrize("args, message", [
    (["--random", "same"], "--random same takes the size of the --under selection"),
    (["--under", FURNITURE], "--under needs --wordnet"),
    ([], "give --under WNID"),
    (["--random", "99"], "--random 99: choose between 1 and the 9 classes"),
    (["--wordnet", "NOUN", "--under", "n00000001"], "--under n00000001: no such synset"),
])
def test_command_refusals(tmp_path, capsys, args, message):
    noun, root = write_noun(tmp_path / "data.noun"), class_root(tmp_path / "root")
    args = [str(noun) if a == "NOUN" else a for a in args]
    assert main(["source-classes", "--from", str(root), "--out", str(tmp_path / "x.txt"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


TINY = ["--model", "small", "--channels", "8,8,8,8,8", "--hidden", "8", "--batch-size", "8",
        "--workers", "0", "--backend", "numpy", "--epochs", "1", "--val-fraction", "0.25"]


def source_folder(root):
    rng = np.random.default_rng(0)
    for cls in ("n01", "n02", "n03"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_pretrain_trains_on_the_classes_of_a_class_list(tmp_path):
    import minicnn as mc

    data = source_folder(tmp_path / "src")
    chosen = tmp_path / "chosen.txt"
    chosen.write_text("n01\nn03\n")
    args = ["pretrain", "--data", str(data), "--out", str(tmp_path / "p"), "--classes", str(chosen), *TINY]
    assert main(args) == 0
    net = mc.Sequential.load(tmp_path / "p" / "source.npz")
    assert net.meta["classes"] == ["n01", "n03"] and net.layers[-1].params["weight"].shape[0] == 2
    assert read_class_list(tmp_path / "p" / "source.npz") == ["n01", "n03"]
    record = json.loads((tmp_path / "p" / "run.json").read_text())
    assert record["data"]["classes"] == 2 and record["data"]["train"] + record["data"]["val"] == 8
    assert str(chosen.resolve()) in record["inputs"]
    assert record["settings"]["classes"] == str(chosen.resolve())
    # with a list file: its images of other classes are left out
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{c}/{i}.png\n" for c in ("n01", "n02", "n03") for i in range(2)))
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "q"), "--classes", str(chosen),
                 "--list", str(listing), *TINY]) == 0
    record = json.loads((tmp_path / "q" / "run.json").read_text())
    assert record["data"]["train"] + record["data"]["val"] == 4


def test_pretrain_class_list_refusals(tmp_path, capsys):
    data = source_folder(tmp_path / "src")
    chosen = tmp_path / "chosen.txt"
    chosen.write_text("n01\nn04\n")
    args = ["pretrain", "--data", str(data), "--out", str(tmp_path / "p"), "--classes", str(chosen), *TINY]
    assert main(args) == 2
    assert "class folder 'n04' does not exist" in capsys.readouterr().err
    chosen.write_text("n01\nn01\n")
    assert main(args) == 2
    assert "class 'n01' is listed twice" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "p"), "--classes",
                 str(tmp_path / "none.txt"), *TINY]) == 2
    assert "no such class-list file" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
