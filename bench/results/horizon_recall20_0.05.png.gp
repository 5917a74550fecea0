set terminal pngcairo noenhanced size 1400,560 font ',10'
set output 'bench/results/horizon_recall20_0.05.png'
set datafile separator ','
set key top right
set grid
set multiplot layout 1,2 title 'lstm (hidden 32, 1 layer(s)) on task recall:20, batch 32, 8 segment(s) of 80 steps, f64'
set logscale y
set title 'mean ||dL_t / dh_{t-j}||'
set xlabel 'lag j'
plot 'bench/results/horizon_recall20_0.05.csv' using 1:($2 > 0 ? $2 : 1/0) with linespoints title 'measured', '' using 1:4 with lines dashtype 2 title sprintf('fit, lambda = %.3f', 1.07732)
unset logscale y
set title 'estimated relative bias of a k-step unroll'
set xlabel 'k'
set yrange [0:1.05]
plot 'bench/results/horizon_recall20_0.05.csv' using 1:5 with linespoints title 'bias', 0.05 with lines dashtype 2 title 'tolerance', '+' using (20):(0.05) with points pt 7 ps 2 title 'suggested k = 20'
unset multiplot
