//! Rows of a table by token id, with a backward that is fast on a GPU too.
//!
//! The gradient of `table.index_select(ids, 0)` is an index-add into the table. candle's CUDA
//! index-add runs one thread per table column and loops over every id in turn, so for the
//! thousands of tokens of a training batch it can take the whole step (benches/MEASUREMENTS.md).
//! A product with the one-hot
//! matrix of the ids is the same numbers (each row of the product has one term) with a gemm for
//! its backward, so a GPU gathers trained tables that way while the one-hot matrix is small.

use candle_core::{DType, Tensor};

use crate::matmul::Matmul;
use crate::model::plan::Kernels;

/// The largest one-hot matrix (elements) worth building for a gather: 1 GiB of f32.
const ONE_HOT_MAX: usize = 1 << 28;

/// `table[ids]`: the rows of `table [rows, ..]` at `ids [n]` (u32), `[n, ..]`; as a product
/// with one-hot rows where the plan's `kernels` are candle's (a GPU) and the table trains.
pub fn gather_rows(table: &Tensor, ids: &Tensor, kernels: Kernels) -> candle_core::Result<Tensor> {
    let rows = table.dim(0)?;
    let n = ids.elem_count();
    let by_product =
        kernels == Kernels::Candle && table.track_op() && n.saturating_mul(rows) <= ONE_HOT_MAX;
    if !by_product {
        return table.index_select(ids, 0);
    }
    let mut dims = table.dims().to_vec();
    let flat = table.reshape((rows, ()))?;
    let gathered = one_hot(ids, rows, table.dtype())?.mm(&flat)?;
    dims[0] = n;
    gathered.reshape(dims)
}

/// `[n, classes]`: row `i` is 1 at `ids[i]` and 0 elsewhere (all 0 for an id out of range).
pub fn one_hot(ids: &Tensor, classes: usize, dtype: DType) -> candle_core::Result<Tensor> {
    let classes = Tensor::arange(0u32, classes as u32, ids.device())?.unsqueeze(0)?;
    ids.flatten_all()?
        .unsqueeze(1)?
        .broadcast_eq(&classes)?
        .to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_product_form_equals_index_select_with_its_gradient() {
        let dev = Device::Cpu;
        let table = Var::randn(0f32, 1.0, (7, 3, 2), &dev).unwrap();
        let ids = Tensor::new(&[4u32, 0, 4, 6, 1], &dev).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (5, 3, 2), &dev).unwrap();
        let by_select = table.as_tensor().index_select(&ids, 0).unwrap();
        let flat = table.as_tensor().reshape((7, 6)).unwrap();
        let by_product = one_hot(&ids, 7, DType::F32)
            .unwrap()
            .mm(&flat)
            .unwrap()
            .reshape((5, 3, 2))
            .unwrap();
        assert_eq!(
            by_select.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            by_product.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grad = |t: Tensor| {
            let g = (t * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            g.get(table.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b) = (grad(by_select), grad(by_product));
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
            "{a:?} {b:?}"
        );
        // Row 4 was gathered twice: its gradient is the sum of both.
        assert!(a[4 * 6..5 * 6].iter().any(|&g| g != 0.0));
    }
}
