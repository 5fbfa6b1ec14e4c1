#![doc = include_str!("../README.md")]
//! `#[derive(Frame)]` for mori-shm: a struct of columns becomes one R-compatible region, and a
//! generated view type reads it back in place.
//!
//! Use it through `mori_shm::Frame` (or `mirai::Frame`); the generated code names the crate it
//! found in your `Cargo.toml` (`mori-shm`, else `mirai`), or the path given with
//! `#[mori(crate = "path")]`. See `mori_shm::Column` for the field types and the view types.
//!
//! For `struct Inputs { x: Vec<f64>, .. }` it generates:
//! - `impl Column for Inputs`, so `mori_shm::share_typed(&inputs)` writes the region (a named
//!   list of the fields, or a data frame with `#[mori(data_frame)]`), and `Inputs` can be a field
//!   of another derived struct (a nested list);
//! - `InputsView` (same visibility as `Inputs`), with one public field per field of `Inputs`
//!   holding its view (`DoubleColumn` derefs to `&[f64]`, a nested struct's field its own view
//!   type); `FromShared` checks the region's shape once, in one pass over a `Shape` made at compile time; the view serializes as the region's
//!   name, so a task can take it as its argument.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

/// Derives `mori_shm::Column` for a struct with named fields, and its view type
/// `<Name>View`.
///
/// Attributes on the struct: `#[mori(data_frame)]` writes an R data frame (equal-length
/// columns) instead of a named list; `#[mori(crate = "path")]` names the path of mori-shm.
#[proc_macro_derive(Frame, attributes(mori))]
pub fn derive_frame(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// What the `#[mori(..)]` attributes ask for.
struct Options {
    data_frame: bool,
    krate: Option<syn::Path>,
}

fn options(input: &DeriveInput) -> syn::Result<Options> {
    let mut out = Options {
        data_frame: false,
        krate: None,
    };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("mori")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("data_frame") {
                out.data_frame = true;
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path: LitStr = meta.value()?.parse()?;
                out.krate = Some(path.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `data_frame` or `crate = \"path\"`"))
            }
        })?;
    }
    Ok(out)
}

/// The path of mori-shm as the user's crate sees it.
fn crate_path(given: Option<syn::Path>) -> Tokens {
    use proc_macro_crate::{FoundCrate, crate_name};
    if let Some(path) = given {
        return quote!(#path);
    }
    match crate_name("mori-shm") {
        Ok(FoundCrate::Itself) => quote!(::mori_shm),
        Ok(FoundCrate::Name(name)) => {
            let ident = format_ident!("{}", name);
            quote!(::#ident)
        }
        Err(_) => match crate_name("mirai") {
            Ok(FoundCrate::Name(name)) => {
                let ident = format_ident!("{}", name);
                quote!(::#ident::__mori_shm)
            }
            _ => quote!(::mori_shm),
        },
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let opts = options(input)?;
    let krate = crate_path(opts.krate);
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Frame)] needs a struct with named fields",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Frame)] needs a struct with named fields",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "#[derive(Frame)] does not take generic structs",
        ));
    }
    let name = &input.ident;
    let vis = &input.vis;
    let view = format_ident!("{}View", name);
    let idents: Vec<_> = named.named.iter().filter_map(|f| f.ident.clone()).collect();
    let types: Vec<_> = named.named.iter().map(|f| f.ty.clone()).collect();
    let labels: Vec<LitStr> = idents
        .iter()
        .map(|i| LitStr::new(&i.to_string(), Span::call_site()))
        .collect();
    let index: Vec<syn::Index> = (0..idents.len()).map(syn::Index::from).collect();
    let a = quote!('__mori_a);
    let b = quote!('__mori_b);
    let elements = if opts.data_frame {
        quote! {
            #krate::__private::Source::DataFrame(::std::vec![
                #((#labels, #krate::Column::source(&self.#idents, &prepared.#index)),)*
            ])
        }
    } else {
        quote! {
            #krate::__private::Source::List(::std::vec![
                #((::std::option::Option::Some(#labels), #krate::Column::source(&self.#idents, &prepared.#index)),)*
            ])
        }
    };
    let view_doc = format!(
        "The typed view of a shared [`{name}`]: each field reads its column in place (made by `#[derive(Frame)]`)."
    );
    Ok(quote! {
        impl #krate::Column for #name {
            type Prepared<#a> = (#(<#types as #krate::Column>::Prepared<#a>,)*) where Self: #a;
            type View = #view;

            fn prepare(&self) -> Self::Prepared<'_> {
                (#(#krate::Column::prepare(&self.#idents),)*)
            }

            fn source<#a, #b>(&#a self, prepared: &#b Self::Prepared<#a>) -> #krate::__private::Source<#b>
            where
                #a: #b,
            {
                #elements
            }
        }

        #[doc = #view_doc]
        #[derive(Debug, Clone)]
        #vis struct #view {
            #(
                #[doc = concat!("The view of `", #labels, "`.")]
                pub #idents: <#types as #krate::Column>::View,
            )*
            __mori_view: #krate::SharedView,
        }

        impl #krate::FromShared for #view {
            const SHAPE: &'static #krate::__private::Shape = &#krate::__private::Shape::Fields {
                names: &[#(#labels,)*],
                shapes: &[#(<<#types as #krate::Column>::View as #krate::FromShared>::SHAPE,)*],
            };

            fn from_parts(parts: &mut #krate::__private::Parts) -> Self {
                // In the order `SHAPE` resolved them: the list, then each field.
                Self {
                    __mori_view: parts.next(),
                    #(#idents: <<#types as #krate::Column>::View as #krate::FromShared>::from_parts(parts),)*
                }
            }

            fn shared_view(&self) -> &#krate::SharedView {
                &self.__mori_view
            }
        }

        impl #krate::__private::serde::Serialize for #view {
            fn serialize<S: #krate::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                #krate::__private::serde::Serialize::serialize(&self.__mori_view, serializer)
            }
        }

        impl<'de> #krate::__private::serde::Deserialize<'de> for #view {
            fn deserialize<D: #krate::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let view = <#krate::SharedView as #krate::__private::serde::Deserialize>::deserialize(deserializer)?;
                <Self as #krate::FromShared>::from_shared(view)
                    .map_err(<D::Error as #krate::__private::serde::de::Error>::custom)
            }
        }
    })
}
