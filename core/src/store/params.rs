//! Parameters of SQL assembled at run time (a search's conditions, an action's SET list, a
//! definition's columns), bound and compared by one piece of code for every query type and
//! both backends.

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

/// A parameter of SQL assembled at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
}

impl Param {
    pub(super) fn text(value: &str) -> Param {
        Param::Text(Some(value.to_string()))
    }
}

/// `bind` of sqlx's query types, which share no trait for it: with it a list of [`Param`]s
/// is bound by [`BindParams::bind_params`] whatever the query returns.
pub(super) trait BindParams<'q, DB: Database>: Sized {
    fn bind_one<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self;

    /// Binds `params` in order, after the parameters bound so far.
    fn bind_params(self, params: impl IntoIterator<Item = &'q Param>) -> Self
    where
        Option<i64>: Encode<'q, DB> + Type<DB>,
        Option<&'q str>: Encode<'q, DB> + Type<DB>,
        bool: Encode<'q, DB> + Type<DB>,
    {
        params.into_iter().fold(self, |query, param| match param {
            Param::Int(value) => query.bind_one(*value),
            Param::Text(value) => query.bind_one(value.as_deref()),
            Param::Bool(value) => query.bind_one(*value),
        })
    }
}

impl<'q, DB: Database> BindParams<'q, DB> for Query<'q, DB, DB::Arguments<'q>> {
    fn bind_one<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> BindParams<'q, DB> for QueryAs<'q, DB, O, DB::Arguments<'q>> {
    fn bind_one<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> BindParams<'q, DB> for QueryScalar<'q, DB, O, DB::Arguments<'q>> {
    fn bind_one<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Whether the columns of `row` from index `first` on hold `values`, in order (NULL equal
/// to NULL, as `None == None`).
pub(super) fn row_holds<'p, R: Row>(
    row: &R,
    first: usize,
    values: impl IntoIterator<Item = &'p Param>,
) -> Result<bool, sqlx::Error>
where
    usize: ColumnIndex<R>,
    Option<i64>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    for (index, value) in (first..).zip(values) {
        let held = match value {
            Param::Int(value) => row.try_get::<Option<i64>, _>(index)? == *value,
            Param::Text(value) => row.try_get::<Option<String>, _>(index)? == *value,
            Param::Bool(value) => row.try_get::<bool, _>(index)? == *value,
        };
        if !held {
            return Ok(false);
        }
    }
    Ok(true)
}
