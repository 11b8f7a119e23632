# lme4 (REML) fits of slopes.csv: y ~ content + stage + (1 + content | subject).
# Run from this folder: Rscript slopes_lme4.R  (writes slopes_lme4.csv)
suppressPackageStartupMessages(library(lme4))
d <- read.csv("slopes.csv")
d$content <- factor(d$content, levels = c("flying", "other"))
d$stage <- factor(d$stage, levels = c("N2", "N3", "REM"))
ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-3, rhoend = 1e-10, maxfun = 1e5),
                    check.conv.singular = "ignore")
rows <- list()
for (k in 0:5) {
  y <- paste0("y", k)
  m <- lmer(as.formula(paste(y, "~ content + stage + (1 + content | subject)")),
            data = d, REML = TRUE, control = ctrl)
  vc <- VarCorr(m)$subject
  fe <- fixef(m)
  se <- sqrt(diag(as.matrix(vcov(m))))
  for (j in seq_along(fe)) {
    rows[[length(rows) + 1]] <- data.frame(cell = y, what = "beta", name = names(fe)[j], value = fe[[j]])
    rows[[length(rows) + 1]] <- data.frame(cell = y, what = "se", name = names(fe)[j], value = se[[j]])
  }
  rows[[length(rows) + 1]] <- data.frame(cell = y, what = "cov_re", name = "00", value = vc[1, 1])
  rows[[length(rows) + 1]] <- data.frame(cell = y, what = "cov_re", name = "01", value = vc[1, 2])
  rows[[length(rows) + 1]] <- data.frame(cell = y, what = "cov_re", name = "11", value = vc[2, 2])
  rows[[length(rows) + 1]] <- data.frame(cell = y, what = "scale", name = "sigma2", value = sigma(m)^2)
  rows[[length(rows) + 1]] <- data.frame(cell = y, what = "reml", name = "REMLcrit", value = REMLcrit(m))
}
out <- do.call(rbind, rows)
write.csv(out, "slopes_lme4.csv", row.names = FALSE)
cat("lme4", as.character(packageVersion("lme4")), "\n")
