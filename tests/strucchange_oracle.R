# The R oracle of tests/test_breaks.py: strucchange on each pixel, as issue 23 defines the bands.
# Usage: Rscript strucchange_oracle.R IN.csv OUT.csv MAX_BREAKS H ALPHA
# IN.csv: first row the years, then one row per pixel (NA missing). OUT.csv: one row per pixel:
# mosum_p, bp_count, bp1..bpN (observation numbers of the valid values), seg slopes, seg p-values,
# the total RSS of the chosen partition (NA where strucchange refuses the series).
suppressMessages(library(strucchange))
args <- commandArgs(trailingOnly = TRUE)
N <- as.integer(args[3]); H <- as.numeric(args[4]); alpha <- as.numeric(args[5])
d <- as.matrix(read.csv(args[1], header = FALSE))
years <- d[1, ]
fmt <- function(v) ifelse(is.na(v), "NA", sprintf("%.17g", v))
rows <- character(0)
for (r in seq_len(nrow(d) - 1) + 1) {
  ok <- !is.na(d[r, ])
  yy <- d[r, ok]; tt <- years[ok]; n <- length(yy)
  res <- rep(NA_real_, 2 + N + 2 * (N + 1) + 1)
  hh <- floor(n * H)
  if (n >= 3 && hh > 2 && hh <= floor(n / 2)) {
    p <- sctest(efp(yy ~ tt, type = "OLS-MOSUM", h = H))$p.value
    bp <- suppressWarnings(breakpoints(yy ~ tt, h = H, breaks = N))
    bic <- summary(bp)$RSS["BIC", ]
    m <- which.min(bic) - 1
    if (p >= alpha) m <- 0
    b <- if (m > 0) breakpoints(bp, breaks = m)$breakpoints else integer(0)
    res[1] <- p; res[2] <- m
    if (m > 0) res[2 + seq_len(m)] <- b
    bounds <- c(0, b, n)
    total <- 0
    for (s in seq_len(m + 1)) {
      i <- (bounds[s] + 1):bounds[s + 1]
      fit <- lm(yy[i] ~ tt[i])
      cf <- coef(summary(fit))
      res[2 + N + s] <- cf[2, 1]
      res[2 + N + N + 1 + s] <- if (nrow(cf) > 1 && ncol(cf) >= 4) cf[2, 4] else NA
      total <- total + sum(residuals(fit)^2)
    }
    res[length(res)] <- total
  }
  rows <- c(rows, paste(fmt(res), collapse = ","))
}
writeLines(rows, args[2])
