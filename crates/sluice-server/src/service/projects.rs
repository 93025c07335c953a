//! Projects: create, get, list, update, delete.

use std::collections::BTreeMap;

use sluice_meta::ProjectRow;

use super::catalog::{key, now_secs, Catalog, Project};
use super::error::{Error, Result};

/// DataHub's name rule: a letter, then letters, digits or `_`, within `min..=max` characters.
pub fn check_name(kind: &str, name: &str, min: usize, max: usize) -> Result<()> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let ok = starts_with_letter
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (min..=max).contains(&name.len());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "{kind} name {name:?} is invalid: it must start with a letter, contain only letters, \
             digits and '_', and be {min} to {max} characters long"
        )))
    }
}

pub fn check_comment(comment: &str) -> Result<()> {
    if comment.chars().count() > 1024 {
        return Err(Error::InvalidParameter(
            "comment is longer than 1024 characters".to_string(),
        ));
    }
    Ok(())
}

impl Catalog {
    pub async fn create_project(&self, name: &str, comment: &str) -> Result<()> {
        check_name("project", name, 3, 32)?;
        check_comment(comment)?;
        let _guard = self.change_lock.lock().await;
        if self.projects.read().contains_key(&key(name)) {
            return Err(Error::ProjectExists(name.to_string()));
        }
        let now = now_secs();
        // The service keeps project names in lower case (Java SDK e2e ProjectTest: created as
        // TMP_..., reported as tmp_...).
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        let row = ProjectRow {
            name: name.to_string(),
            comment: comment.to_string(),
            create_time: now,
            last_modify_time: now,
        };
        self.meta.insert_project(&row).await?;
        self.projects.write().insert(
            key(name),
            Project {
                row,
                topics: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn get_project(&self, name: &str) -> Result<ProjectRow> {
        self.projects
            .read()
            .get(&key(name))
            .map(|p| p.row.clone())
            .ok_or_else(|| Error::NoSuchProject(name.to_string()))
    }

    pub fn list_projects(&self) -> Vec<String> {
        self.projects
            .read()
            .values()
            .map(|p| p.row.name.clone())
            .collect()
    }

    pub async fn update_project(&self, name: &str, comment: &str) -> Result<()> {
        check_comment(comment)?;
        let _guard = self.change_lock.lock().await;
        let mut row = self.get_project(name)?;
        row.comment = comment.to_string();
        row.last_modify_time = now_secs();
        self.meta.update_project(&row).await?;
        if let Some(p) = self.projects.write().get_mut(&key(name)) {
            p.row = row;
        }
        Ok(())
    }

    pub async fn delete_project(&self, name: &str) -> Result<()> {
        let _guard = self.change_lock.lock().await;
        {
            let projects = self.projects.read();
            let p = projects
                .get(&key(name))
                .ok_or_else(|| Error::NoSuchProject(name.to_string()))?;
            if !p.topics.is_empty() {
                return Err(Error::InvalidOperation(format!(
                    "project {name:?} still has {} topic(s); delete them first",
                    p.topics.len()
                )));
            }
        }
        self.meta.delete_project(name).await?;
        self.projects.write().remove(&key(name));
        Ok(())
    }
}
