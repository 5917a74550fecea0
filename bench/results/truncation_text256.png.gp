set terminal pngcairo noenhanced size 1500,560 font ',10'
set output 'bench/results/truncation_text256.png'
set datafile separator ','
set key outside right
set grid
set logscale x
set multiplot layout 1,2 title 'lstm (hidden 256, 1 layer(s)) on /work/main/data/tinyshakespeare.txt, batch 8, 4 segment(s) of 256 steps, f64'
set title 'relative error ||g_k - g|| / ||g||'
set xlabel 'k2 (steps backpropagated)'
plot 'bench/results/truncation_text256.csv' using ($3 == 0 ? $2 : 1/0):7 with linespoints lw 3 lc rgb 'black' title 'all', 'bench/results/truncation_text256.csv' using ($3 == 1 ? $2 : 1/0):7 with linespoints title 'embedding.weight', 'bench/results/truncation_text256.csv' using ($3 == 2 ? $2 : 1/0):7 with linespoints title 'rnn.weight_ih_l0', 'bench/results/truncation_text256.csv' using ($3 == 3 ? $2 : 1/0):7 with linespoints title 'rnn.weight_hh_l0', 'bench/results/truncation_text256.csv' using ($3 == 4 ? $2 : 1/0):7 with linespoints title 'rnn.bias_ih_l0', 'bench/results/truncation_text256.csv' using ($3 == 5 ? $2 : 1/0):7 with linespoints title 'rnn.bias_hh_l0', 'bench/results/truncation_text256.csv' using ($3 == 6 ? $2 : 1/0):7 with linespoints title 'head.weight', 'bench/results/truncation_text256.csv' using ($3 == 7 ? $2 : 1/0):7 with linespoints title 'head.bias'
set title 'cosine(g_k, g)'
set key off
plot 'bench/results/truncation_text256.csv' using ($3 == 0 ? $2 : 1/0):5 with linespoints lw 3 lc rgb 'black' notitle, 'bench/results/truncation_text256.csv' using ($3 == 1 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 2 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 3 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 4 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 5 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 6 ? $2 : 1/0):5 with linespoints notitle, 'bench/results/truncation_text256.csv' using ($3 == 7 ? $2 : 1/0):5 with linespoints notitle
unset multiplot
