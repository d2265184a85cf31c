#!/usr/bin/env bash
# The commands behind tools/RESULTS.md (CPU, 1 BLAS thread). Outputs go to tools/results/.
# Table 1 on Fashion-MNIST runs as two processes (rows 1-3 and 4-5) merged afterwards; the parts go to a
# scratch folder and only the merged table is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
R=tools/results
case "${1:-all}" in
  table1-mnist5k) sibp-np table1 --dataset mnist-5k --runs 5 --epochs 2 --out $R/table1_mnist5k ;;
  table1-fashion-a) sibp-np table1 --dataset fashion-mnist --runs 5 --epochs 2 --rows 1,2,3 --out /tmp/sibp_np_t1_fm_a ;;
  table1-fashion-b) sibp-np table1 --dataset fashion-mnist --runs 5 --epochs 2 --rows 4,5 --out /tmp/sibp_np_t1_fm_b ;;
  table1-fashion-merge) sibp-np merge-table1 $R/table1_fashion /tmp/sibp_np_t1_fm_a /tmp/sibp_np_t1_fm_b ;;
  eta-grids)
    for m in sibp proxbp; do
      sibp-np eta-grid --dataset mnist-5k --epochs 5 --method $m --fixed '{"lam": 1}' --out $R/eta_grid_mnist5k/$m
    done
    sibp-np eta-grid --dataset mnist-5k --epochs 5 --method sgd --out $R/eta_grid_mnist5k/sgd
    ;;
  figures)
    sibp-np figure 2 --dataset fashion-mnist --epochs 4 --tune --eval-every 110 --train-eval-size 10000 --out $R/figure2
    sibp-np figure 3 --dataset fashion-mnist --widths 2000,500,2000 --epochs 3 --tune --eval-every 110 --train-eval-size 10000 --out $R/figure3
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --tune --eval-every 55 --train-eval-size 10000 --out $R/figure4
    sibp-np figure 5 --dataset fashion-mnist --widths 2000,500,2000 --time-budget 90 --eval-every 55 --train-eval-size 10000 --out $R/figure5
    ;;
  figure4-default)  # Figure 4 with SIBP's trust-region default
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --tune --eval-every 55 --train-eval-size 10000 --out $R/figure4_trustregion
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --eval-every 55 --train-eval-size 10000 --init-std 0.05 --out $R/figure4_init005_trustregion
    ;;
  perf)
    python tools/bench.py > $R/perf/bench_784_500_10.txt
    python tools/bench.py --layers 784,600,600,600,600,600,600,600,600,600,600,10 --samples 5500 --methods sgd,sibp,proxbp --no-compare > $R/perf/bench_deep.txt
    python tools/bench.py --layers 3072,4000,1000,4000,10 --samples 2000 --repeats 2 --methods sgd,sibp,proxbp --no-compare > $R/perf/bench_wide.txt
    python tools/bench.py --time-to-accuracy > $R/perf/time_to_accuracy.md
    ;;
  deepnet)
    D=$R/deepnet
    python tools/deepnet.py analysis --steps 2 > $D/analysis.txt
    python tools/deepnet.py table --init-std 0.05 --rows 0,1,2,3 --json $D/table_init005.json > $D/table_init005.md
    python tools/deepnet.py table --init-std 0.01 --rows 0,1,2 --json $D/table_init001.json > $D/table_init001.md
    sibp-np eta-grid --dataset fashion-mnist --epochs 2 --method sibp --grid 1,10 --fixed '{"lam": 1}' --out $D/fashion_best_cell
    sibp-np table1 --dataset mnist-5k --runs 5 --epochs 2 --rows 4,5 --out $R/table1_mnist5k_sibp_trustregion --quiet
    ;;
  output-prox)  # SIBP's default: output-space proximal term (prox_metric="output"), trust_radius 4
    D=$R/deepnet_output_prox
    python tools/deepnet.py table --init-std 0.05 --rows 0,1,2,3,4,5,6 --json $D/table_init005.json > $D/table_init005.md
    python tools/deepnet.py table --init-std 0.01 --rows 0,1,2,4 --json $D/table_init001.json > $D/table_init001.md
    python tools/deepnet.py growth --eta 10 > $D/growth_eta10.md
    python tools/deepnet.py seeds --eta 10 --seeds 8 > $D/seeds_eta10.md
    python tools/deepnet.py analysis --steps 2 > $D/analysis.txt
    python tools/bench.py --methods sgd,sibp,sibp-previous --no-compare --samples 11000 --repeats 5 > $D/bench_cost.txt
    sibp-np eta-grid --dataset mnist-5k --epochs 5 --method sibp --fixed '{"lam": 1}' --out $D/eta_grid_mnist5k_sibp --quiet
    sibp-np eta-grid --dataset fashion-mnist --epochs 2 --method sibp --grid 1,10 --fixed '{"lam": 1}' --out $D/fashion_best_cell --quiet
    sibp-np table1 --dataset mnist-5k --runs 5 --epochs 2 --rows 4,5 --out $R/table1_mnist5k_sibp_outputprox --quiet --jobs 2
    sibp-np table1 --dataset fashion-mnist --runs 5 --epochs 2 --rows 4,5 --out $R/table1_fashion_sibp_outputprox --quiet --jobs 2
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --tune --eval-every 55 --train-eval-size 10000 --out $R/figure4_outputprox
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --eval-every 55 --train-eval-size 10000 --init-std 0.05 --out $R/figure4_init005_outputprox
    ;;
  *) echo "usage: $0 table1-mnist5k|table1-fashion-a|table1-fashion-b|table1-fashion-merge|eta-grids|figures|figure4-default|perf|deepnet|output-prox"; exit 2 ;;
esac
