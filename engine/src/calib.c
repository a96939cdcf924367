/*
 * calib.c - calibration: which bin a confidence falls in, and the expected,
 * maximum and root-mean-square calibration errors and the Brier score
 * derived from a result's bin sums (extra.h).
 *
 * Why shaped so: a bin keeps sums (count, sum w, sum w*conf, sum w*acc), not
 * means, so bins of two batches add; the errors are computed only when read.
 * That is what makes calibration additive in a stream, and it is also how
 * TorchMetrics' _binning_bucketize computes them (per-bin mean confidence
 * and accuracy, weighted by the bin's share).
 *
 * Bin edges are b/B as a correctly rounded double, and a confidence goes to
 * the bin whose lower edge it reaches (the interval [b/B, (b+1)/B)); 1.0
 * goes to the last bin (TorchMetrics gives an exact 1.0 a bin of its own and
 * puts a value on an inner edge in the lower bin; scikit-learn's
 * calibration_curve puts it in the upper one, as here). The floor of p*B is
 * corrected by one comparison with the edges either side, so rounding of
 * the product never moves a value across an edge.
 *
 * Does not: read tensors (extra.c does), know about JSON.
 */
#include "lossd/extra.h"

#include <math.h>

int eng_calib_bin_of(double p, int bins)
{
	if (!(p > 0)) /* also NaN */
		return 0;
	if (p >= 1)
		return bins - 1;
	double B = (double)bins;
	int b = (int)(p * B);
	if (b > bins - 1)
		b = bins - 1;
	if (b > 0 && p < (double)b / B)
		b--;
	else if (b + 1 < bins && p >= (double)(b + 1) / B)
		b++;
	return b;
}

bool eng_calib_summarize(eng_calib_summary *out, const eng_extra_result *r)
{
	double W = 0;
	out->ece = out->mce = out->rmsce = out->brier = NAN;
	if (!r || r->bins <= 0 || !r->bin)
		return false;
	for (int b = 0; b < r->bins; b++)
		W += r->bin[b].weight;
	if (!(W > 0))
		return false;
	double ece = 0, mce = 0, ms = 0;
	for (int b = 0; b < r->bins; b++) {
		const eng_calib_bin *k = &r->bin[b];
		if (!(k->weight > 0))
			continue;
		double gap = fabs(k->acc / k->weight - k->conf / k->weight);
		double share = k->weight / W;
		ece += share * gap;
		ms += share * gap * gap;
		mce = gap > mce ? gap : mce;
	}
	out->ece = ece;
	out->mce = mce;
	out->rmsce = sqrt(ms);
	out->brier = r->brier_sum / W;
	return true;
}
